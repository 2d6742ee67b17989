"""`mpguard deploy --port P BUNDLE`: send a signed bundle, install, reboot, report."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from .. import reasons
from ..errors import CommandError, MpguardError
from ..link import BoardLink
from ..updates import deploy
from .common import Progress, Result, resolve_port

# Exit codes a script can rely on (mpguard.reasons).
EXIT_BY_OUTCOME = {"confirmed": reasons.EXIT_OK, "refused": reasons.EXIT_REFUSED,
                   "rolled_back": reasons.EXIT_ROLLED_BACK, "trial": reasons.EXIT_TRIAL}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="send a signed bundle to a board and report installed / refused / rolled back",
        description="Stream BUNDLE to the board's agent, which verifies it before writing "
        "anything. When installed, the board reboots into the new app on trial; deploy waits "
        "for the app to confirm (or the board to roll back).",
        epilog=reasons.epilog(*reasons.EXIT_CODES),
    )
    p.add_argument("bundle")
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("--wait", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the trial's outcome (default 30)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--project", metavar="DIR",
                   help="project whose inventory records the outcome (default: found upwards)")
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.set_defaults(func=run)


def _record(link: BoardLink, args: argparse.Namespace, res: deploy.DeployResult,
            data: bytes) -> None:
    """The outcome goes to the board's history in the inventory, when the board is a
    provisioned one of this project; a failure to record is a warning, not a failed deploy."""
    from .. import project
    from ..identity import records

    try:
        proj = project.find(args.project)
    except MpguardError:
        if args.project:
            raise
        return  # not in a project: nothing to record against
    st = res.status or {}
    event = {"outcome": res.outcome, "reason": res.reason,
             "bundle_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
             "seconds": round(res.seconds, 2),
             # what the board runs afterwards (after a rollback: the previous app)
             "runs": {k: st.get(k) for k in ("app", "ver", "seq")} if st else None}
    try:
        records.record_board_event(link, proj.root, "deploy", event, args.db)
    except MpguardError as e:
        print(f"mpguard: deploy not recorded in the inventory: {e}", file=sys.stderr)


def run(args: argparse.Namespace) -> Result:
    path = Path(args.bundle)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    progress = None if args.json else Progress("transfer")
    with BoardLink(resolve_port(args.port)) as link:
        res = deploy.deploy(link, data, progress=progress, wait=args.wait)
        _record(link, args, res, data)
    rc = EXIT_BY_OUTCOME.get(res.outcome, reasons.EXIT_ERROR)
    if res.outcome == "refused":
        text = f"refused by the board: {reasons.message(str(res.reason), res.detail)}"
        hint = reasons.hint(str(res.reason))
        if hint:
            text += f"\n  hint: {hint}"
    else:
        st = res.status
        text = (f"{res.outcome}: board runs {st.get('app')} {st.get('ver')} (seq {st.get('seq')}) "
                f"in {res.seconds:.1f} s")
    return Result(res.as_dict(), text, rc)
