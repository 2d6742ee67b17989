"""`mpguard anchors rotate|push|status`: the project's release keys (trust anchors) changed by
a signed statement, and boards brought up to it (docs/rotate.md, "Release keys")."""

from __future__ import annotations

import argparse

from .. import project, reasons
from ..errors import MpguardError
from .common import Result, resolve_port


def add_parser(sub: argparse._SubParsersAction, summary: str) -> None:
    p = sub.add_parser("anchors", help=summary,
                       description="A trust-anchor statement adds or removes release keys; it "
                       "is signed by the current anchors (k of n, default 1 of 1) and carries a "
                       "version, so a board never goes back to an older set. Boards take it with "
                       "`anchors push` or before a `deploy`. See docs/rotate.md.",
                       epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                             reasons.EXIT_LINK, reasons.EXIT_REFUSED))
    s = p.add_subparsers(dest="anchors_command", metavar="ACTION")
    r = s.add_parser("rotate", help="make the next statement: --add and/or --remove a key",
                     description="--add new makes a release key in keys/ (encrypted with the "
                     "passphrase) that signs the project's releases from now on; --add PEM adds "
                     "a key held elsewhere (a private key file is used for signing too). "
                     "--remove takes a key id or a PEM file. Nothing is sent to a board.",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                           reasons.EXIT_REFUSED))
    r.add_argument("--add", metavar="new|PEM", help="the release key to add")
    r.add_argument("--remove", metavar="KID|PEM", help="the release key to remove")
    r.add_argument("--threshold", type=int, metavar="K",
                   help="signatures a later statement needs (default: as now, at most the keys)")
    r.add_argument("--sign-with", action="append", default=[], metavar="PEM",
                   help="a current anchor's private key held outside the project (k of n)")
    r.add_argument("--no-passphrase", action="store_true",
                   help="with --add new: store the new key unencrypted (not recommended)")
    r.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=run_rotate)

    u = s.add_parser("push", help="send a board the statements above its anchors' version",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE,
                                           reasons.EXIT_LINK, reasons.EXIT_REFUSED))
    u.add_argument("--port", required=True, help="serial port, or sim:NAME for a virtual board")
    u.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    u.add_argument("--json", action="store_true", help="print the result as one JSON object")
    u.set_defaults(func=run_push)

    f = s.add_parser("repair", help="take out of the statement log the statements an "
                     "interrupted rotation of an earlier mpguard left there",
                     description="Keeps the statements on the way to anchors.json (the one of "
                     "its version whose keys are its keys, the one below whose keys signed it, "
                     "and so on) and takes the others out of anchors-statements.json (a copy "
                     "of it is kept). Nothing is sent to a board. See docs/rotate.md.",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE))
    f.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    f.add_argument("--json", action="store_true", help="print the result as one JSON object")
    f.set_defaults(func=run_repair)

    t = s.add_parser("status", help="the project's anchors: version, threshold, keys, statements",
                     epilog=reasons.epilog(reasons.EXIT_OK, reasons.EXIT_USAGE))
    t.add_argument("--project", metavar="DIR", help="project folder (default: found upwards)")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object")
    t.set_defaults(func=run_status)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_rotate(args: argparse.Namespace) -> Result:
    from ..rotate import anchors

    proj = project.find(args.project)
    encrypted = any(e.get("encrypted") for e in proj.config["release_keys"])
    needs = (args.add == "new" and not args.no_passphrase) or encrypted
    try:
        pw = project.ask_passphrase() if needs else None
    except MpguardError as e:
        if not encrypted:  # only the new key wants one: say how this project keeps its keys
            e.hint = ("this project's release keys are stored unencrypted: add --no-passphrase "
                      "to store the new one the same way, or set MPGUARD_PASSPHRASE")
        raise
    res = anchors.rotate(proj, add=args.add, remove=args.remove, passphrase=pw,
                         threshold=args.threshold, sign_with=args.sign_with)
    if res.finished:  # a rerun after an interruption: that rotation, nothing more
        return Result(res.as_dict(), "\n".join([
            f"finished the interrupted rotation to version {res.ver} ({res.k} of "
            f"{len(res.keys)} sign a statement); nothing else was made",
            f"  releases are signed with {res.signing_key} from now on",
            "  run `mpguard anchors rotate` again for another rotation"]))
    lines = [f"trust anchors version {res.ver} ({res.k} of {len(res.keys)} sign a statement)"]
    lines += [f"  added        {k}" for k in res.added]
    lines += [f"  removed      {k}" for k in res.removed]
    lines += [f"  made         {m}" for m in res.made]
    lines += [f"  signed by    {', '.join(res.signed_by)}",
              f"  releases are signed with {res.signing_key} from now on",
              "  boards take it with `mpguard anchors push --port P` or at their next deploy"]
    return Result(res.as_dict(), "\n".join(lines))


def run_push(args: argparse.Namespace) -> Result:
    from ..link import BoardLink
    from ..rotate import anchors

    proj = project.find(args.project)
    with BoardLink(resolve_port(args.port)) as link:
        res = anchors.push(link, proj)
    text = (f"anchors version {res.before} -> {res.after}: statements {res.applied} accepted"
            if res.applied else f"the board's anchors are up to date (version {res.before})")
    return Result(res.as_dict(), text)


def run_status(args: argparse.Namespace) -> Result:
    from ..rotate import anchors

    proj = project.find(args.project)
    log = anchors.statements(proj)  # an interrupted rotation is finished first
    doc = proj.board_anchors()
    signing = proj.key_entry()["kid"]
    data = {"ver": doc.get("ver", 0), "k": doc.get("k", 1), "keys": sorted(doc["keys"]),
            "ops": sorted(doc.get("ops", {})), "statements": [s["ver"] for s in log],
            "signing_key": signing}
    lines = [f"trust anchors version {data['ver']}, {data['k']} of {len(data['keys'])} sign "
             "a statement"]
    lines += [f"  release key  {k}{' (signs releases)' if k == signing else ''}"
              for k in data["keys"]]
    lines += [f"  operator key {k}" for k in data["ops"]]
    lines.append(f"  statements   {data['statements'] or 'none'}")
    try:
        anchors.check_log(proj, log)
    except MpguardError as e:
        data["problem"] = str(e)
        lines.append(f"  problem      {e} ({e.hint})")
    return Result(data, "\n".join(lines))


def run_repair(args: argparse.Namespace) -> Result:
    from ..rotate import anchors

    proj = project.find(args.project)
    res = anchors.repair(proj)
    if not res.removed:
        return Result(res.as_dict(), "the statement log follows anchors.json: nothing to do")
    return Result(res.as_dict(), "\n".join([
        f"statements of versions {res.removed} taken out of the log (the log as it was: "
        f"{res.backup})",
        "  a board that took one of them refuses the project's statements: install its "
        "anchors over USB, `mpguard agent install --port P --force`"]))
