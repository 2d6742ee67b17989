"""`mpguard deploy --port P BUNDLE`: send a signed bundle, install, reboot, report."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..errors import CommandError, MpguardError
from ..link import BoardLink
from ..updates import deploy
from .common import Progress, print_json, resolve_port

# Exit codes a script can rely on.
EXIT_OK = 0  # installed and confirmed (or still on trial with --no-wait semantics)
EXIT_REFUSED = 4  # the board refused the bundle
EXIT_ROLLED_BACK = 5  # installed, but the new app failed its trial and the board rolled back
EXIT_TRIAL = 6  # installed, not confirmed within --wait seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="send a signed bundle to a board and report installed / refused / rolled back",
        description="Stream BUNDLE to the board's agent, which verifies it before writing "
        "anything. When installed, the board reboots into the new app on trial; deploy waits "
        "for the app to confirm (or the board to roll back). Exit codes: 0 confirmed, "
        f"{EXIT_REFUSED} refused, {EXIT_ROLLED_BACK} rolled back, {EXIT_TRIAL} still on trial.",
    )
    p.add_argument("bundle")
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("--wait", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the trial's outcome (default 30)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
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


def run(args: argparse.Namespace) -> int:
    path = Path(args.bundle)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    progress = None if args.json else Progress("transfer")
    with BoardLink(resolve_port(args.port)) as link:
        res = deploy.deploy(link, data, progress=progress, wait=args.wait)
        _record(link, args, res, data)
    if args.json:
        out = res.as_dict()
        print_json(out)
    elif res.outcome == "refused":
        print(f"refused by the board: {res.reason}" + (f" ({res.detail})" if res.detail else ""))
    else:
        st = res.status
        print(f"{res.outcome}: board runs {st.get('app')} {st.get('ver')} (seq {st.get('seq')}) "
              f"in {res.seconds:.1f} s")
    return {"confirmed": EXIT_OK, "refused": EXIT_REFUSED, "rolled_back": EXIT_ROLLED_BACK,
            "trial": EXIT_TRIAL}.get(res.outcome, 1)
