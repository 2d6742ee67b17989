"""`mpguard deploy --port P BUNDLE`: send a signed bundle, install, reboot, report."""

from __future__ import annotations

import argparse
import hashlib
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import reasons
from ..errors import CommandError, MpguardError
from .common import Progress, Result, resolve_port, seconds

if TYPE_CHECKING:
    from ..link import BoardLink
    from ..updates import deploy


# Exit codes a script can rely on (mpguard.reasons).
EXIT_BY_OUTCOME = {"confirmed": reasons.EXIT_OK, "refused": reasons.EXIT_REFUSED,
                   "rolled_back": reasons.EXIT_ROLLED_BACK, "trial": reasons.EXIT_TRIAL}


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser(
        "deploy",
        help=summary,
        description="Stream BUNDLE to the board's agent, which verifies it before writing "
        "anything. When installed, the board reboots into the new app on trial; deploy waits "
        "for the app to confirm (or the board to roll back) and reports what the agent's "
        "state says. A board that resets during the transfer keeps its old app (exit 3).",
        epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_ERROR, reasons.EXIT_USAGE,
                              reasons.EXIT_LINK, reasons.EXIT_REFUSED, reasons.EXIT_ROLLED_BACK,
                              reasons.EXIT_TRIAL),
    )
    p.add_argument("bundle")
    p.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    p.add_argument("--wait", type=seconds, default=30.0, metavar="S",
                   help="seconds to wait for the trial's outcome (default 30)")
    p.add_argument("--deadline", type=seconds, default=None, metavar="S",
                   help="seconds the transfer and install may take at most, whatever the board "
                   "prints (default: 60 + 1 s per 500 B of bundle)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--project", metavar="DIR",
                   help="project whose inventory records the outcome (default: found upwards)")
    p.add_argument("--db", metavar="URL", help="inventory database (default: the project's)")
    p.set_defaults(func=run)


def _identity(link: BoardLink, args: argparse.Namespace) -> tuple[Path, tuple[str, str]] | None:
    """(the project's folder, the board's identity), read before the deploy when this is a
    project (the record after it must not ask the board again: that would stop the app the
    deploy left running)."""
    from .. import project
    from ..identity import records

    try:
        root = project.find(args.project).root
    except MpguardError:
        if args.project:
            raise
        return None  # not in a project: nothing to record against
    try:
        ident = records.board_identity(link)
    except MpguardError as e:
        print(f"mpguard: deploy will not be recorded in the inventory: {e}", file=sys.stderr)
        return None
    return None if ident is None else (root, ident)


def _record(known: tuple[Path, tuple[str, str]] | None, args: argparse.Namespace,
            res: deploy.DeployResult, data: bytes) -> None:
    """The outcome goes to the board's history in the inventory, when the board is a
    provisioned one of this project; a failure to record is a warning, not a failed deploy."""
    from ..identity import records

    if known is None:
        return
    root, ident = known
    st = res.status or {}
    event = {"outcome": res.outcome, "reason": res.reason,
             "bundle_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
             "seconds": round(res.seconds, 2),
             # what the board runs afterwards (after a rollback: the previous app)
             "runs": {k: st.get(k) for k in ("app", "ver", "seq")} if st else None}
    try:
        records.record_event(ident, root, "deploy", event, args.db)
    except MpguardError as e:
        print(f"mpguard: deploy not recorded in the inventory: {e}", file=sys.stderr)


def _anchors_first(link: BoardLink, args: argparse.Namespace) -> list[int]:
    """A board whose anchors are older than the project's statements takes them first
    (`mpguard anchors push`), so a bundle signed by a new release key verifies. A refusal is
    a warning: the board keeps its anchors and judges the bundle with them."""
    from .. import project
    from ..rotate import anchors

    try:
        proj = project.find(args.project)
        if not anchors.statements(proj) or not anchors.pending(link, proj):
            return []
        return anchors.push(link, proj).applied
    except MpguardError as e:
        if args.project and not getattr(e, "reason", None):
            raise
        if getattr(e, "reason", None):
            print(f"mpguard: the board did not take the project's trust-anchor statements: {e}",
                  file=sys.stderr)
        return []


def read_bundle(name: str) -> bytes:
    """The bundle file's bytes: a regular file of at most the largest bundle a board takes
    (a device such as /dev/zero, a folder or a FIFO is refused before anything is read)."""
    from ..updates import deploy

    path = Path(name)
    try:
        st = path.stat()
    except OSError as e:
        raise CommandError(f"cannot read {name}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CommandError(f"{name} is not a regular file (a bundle is one, from "
                           "`mpguard release build`)")
    if st.st_size > deploy.MAX_BUNDLE:
        raise CommandError(f"{name} is {st.st_size} B, larger than any bundle "
                           f"({deploy.MAX_BUNDLE} B at most)")
    try:
        with path.open("rb") as f:
            data = f.read(deploy.MAX_BUNDLE + 1)
    except OSError as e:
        raise CommandError(f"cannot read {name}: {e.strerror}") from None
    if len(data) > deploy.MAX_BUNDLE:  # it grew after the check
        raise CommandError(f"{name} is larger than any bundle ({deploy.MAX_BUNDLE} B at most)")
    return data


def run(args: argparse.Namespace) -> Result:
    from ..link import BoardLink
    from ..updates import deploy, explain

    data = read_bundle(args.bundle)
    if args.deadline is not None and args.deadline <= 0:
        raise CommandError("--deadline must be positive")
    progress = None if args.json else Progress(f"transfer to {args.port}")
    with BoardLink(resolve_port(args.port)) as link:
        pushed = _anchors_first(link, args)
        ident = _identity(link, args)
        res = deploy.deploy(link, data, progress=progress, wait=args.wait,
                            deadline=args.deadline)
    _record(ident, args, res, data)
    if pushed:
        res.warnings.insert(0, f"trust-anchor statements {pushed} accepted before the bundle")
    rc = EXIT_BY_OUTCOME.get(res.outcome, reasons.EXIT_ERROR)
    head, lines, hint = explain.explain(res)
    text = "\n".join([head] + [f"  {ln}" for ln in lines]
                     + [f"  warning: {w}" for w in res.warnings]
                     + ([f"  hint: {hint}"] if hint else []))
    data_out = res.as_dict()
    data_out.update(message=head, details=lines, hint=hint)
    if rc != reasons.EXIT_OK:  # the README's --json contract: a failure carries `error`
        data_out["error"] = {"type": _ERROR_TYPE.get(res.outcome, "DeployFailed"),
                             "message": head, "reason": res.reason, "hint": hint}
    return Result(data_out, text, rc)


_ERROR_TYPE = {"refused": "DeployRefused", "rolled_back": "RolledBack", "trial": "StillOnTrial"}
