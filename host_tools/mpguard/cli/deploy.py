"""`mpguard deploy --port P BUNDLE`: send a signed bundle, install, reboot, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import reasons
from ..errors import CommandError
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Result:
    path = Path(args.bundle)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    progress = None if args.json else Progress("transfer")
    with BoardLink(resolve_port(args.port)) as link:
        res = deploy.deploy(link, data, progress=progress, wait=args.wait)
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
