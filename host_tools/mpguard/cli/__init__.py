"""The `mpguard` command line: one command table, one output path, one error path.

Each command NAME in COMMANDS has a module mpguard.cli.NAME with `add_parser(subparsers,
summary)`, whose parsers set `func`. A `func` only parses arguments and calls one library
function; it returns a `Result` (data for `--json`, text for people, an exit code) or an
int. `main` prints the Result once: as one JSON object with `--json` (every outcome, errors
included, always with `exit_code`), else as text. A `MpguardError` becomes `mpguard:
message` (and a hint) on stderr and its exit code (mpguard.reasons).

Every command pays for what `mpguard` imports before it runs (tests/host/test_cli_startup.py,
docs/decisions/0021-cli-startup.md): `main` imports the module of the command being run only
and builds its parser only (the others are their line of --help); a command module imports
at its top only what is light (argparse, reasons, errors, project, .common), a `func` the
library it calls, and `add_parser` what its defaults need.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from .. import __version__, reasons
from ..errors import MpguardError
from .common import Result, error_json, print_json

# The commands in --help order: NAME (module mpguard.cli.NAME) -> its line in `mpguard --help`.
COMMANDS = {
    "init": "make a project folder: config, release signing key, trust anchors",
    "sim": "virtual ESP32 boards that mpremote drives",
    "agent": "install or uninstall the mpguard agent on a board",
    "release": "build (sign) and verify update bundles",
    "deploy": "send a signed bundle to a board and report installed / refused / rolled back",
    "ca": "the project's device CA: make one, show it, sign its CRL",
    "provision": "give a board its identity: key made on the board, certificate, inventory record",
    "devices": "provisioned boards: list, show, export certificates, revoke",
    "secret": "a board's secrets (Wi-Fi, MQTT, API tokens): set, status",
    "rotate": "rotate a board's secret (stage, test, commit or revert) or its identity",
    "anchors": "trust anchors: rotate the release keys, push to boards",
    "status": "what the board runs: agent, board, app, trial, last update, anchors",
    "attest": "a signed posture attestation of a board, judged by a policy",
    "report": "the fleet's attestations: per board, per rule, fleet problems",
    "fuse": "eFuses: status in the words of attestation; guarded burns",
    "line": "production-line station: many boards in parallel",
    "demo": ("the mpguard story on a virtual board (init, provision, updates, rollback, a forged "
             "bundle refused, attestation, an MQTT password rotated)"),
}


# A key id or UEID in base64url may begin with "-" (1 in 64 of them): a word that does, with
# 16 or more characters of that alphabet and one that no option name has (a capital, a digit
# or "_"), is a value, not an unknown option (`--remove -Xa9...`, `devices show -Xa9...`).
_ID_LIKE = re.compile(r"-[A-Za-z0-9_-]{15,}\Z")
_NOT_OPTION = re.compile(r"[A-Z0-9_]")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one JSON object when --json was asked for,
    and that takes a base64url id beginning with "-" as a value."""

    def _parse_optional(self, arg_string):  # type: ignore[no-untyped-def]
        if (_ID_LIKE.match(arg_string) and _NOT_OPTION.search(arg_string)
                and arg_string not in self._option_string_actions):
            return None  # a value (what argparse does with a negative number)
        return super()._parse_optional(arg_string)

    def error(self, message: str) -> None:  # type: ignore[override]
        if _want_json:
            print_json({"ok": False, "exit_code": reasons.EXIT_USAGE,
                        "error": {"type": "UsageError", "message": message,
                                  "hint": f"see `{self.prog} --help`"}})
        super().error(message)


_want_json = False  # set by main() before parsing: a usage error is JSON too then


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given `command`, only that command's parser in full (none
    when it names no command), the others as their line of `mpguard --help` only."""
    parser = _Parser(
        prog="mpguard",
        description="Secure configuration for MicroPython boards: project keys, the board "
        "agent, signed updates, and virtual boards for testing.",
        epilog=reasons.epilog(*reasons.EXIT_CODES),
    )
    parser.add_argument("--version", action="version", version=f"mpguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, summary in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"{__name__}.{name}").add_parser(sub, summary)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command(argv: list[str]) -> str:
    """The command `argv` runs: its first word that is not an option (mpguard's own options
    take no value), or "" (then it runs none: help, version or a usage error)."""
    return next((a for a in argv if not a.startswith("-")), "")


def shown(text: str) -> str:
    """An error's text as the terminal gets it: what a board or a token put in it (a reason, a
    kid, a detail) may hold escape sequences or control characters; each is written out
    (\\x1b), so none can retitle, clear or recolour the operator's terminal. Line breaks stay."""
    return "\n".join("".join(c if c.isprintable() else
                              (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
                              for c in line) for line in text.split("\n"))


EXIT_PIPE = 141  # what a shell reports for a process ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    try:
        rc = _main(argv)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        # the reader of the output went away (`mpguard ... | head`): nothing more to say, and
        # nothing to flush at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE


def _main(argv: list[str] | None) -> int:
    global _want_json
    words = sys.argv[1:] if argv is None else argv
    _want_json = "--json" in words
    parser = build_parser(_command(words))
    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    one_line = bool(getattr(args, "json_lines", False))  # its --json is JSON lines
    if not getattr(args, "func", None):
        parser.print_help()
        return reasons.EXIT_USAGE
    try:
        res = args.func(args)
    except MpguardError as e:
        if as_json:
            print_json(error_json(e), one_line)
        print(f"mpguard: {shown(str(e))}", file=sys.stderr)
        hint = e.hint or reasons.hint(getattr(e, "reason", "") or "")
        if hint:
            print(f"  hint: {shown(hint)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if as_json:
            print_json({"ok": False, "exit_code": 130,
                        "error": {"type": "KeyboardInterrupt", "message": "interrupted"}},
                       one_line)
        print("mpguard: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so plainly, keep the traceback for the report
        if not as_json:
            raise
        import traceback

        print_json({"ok": False, "exit_code": reasons.EXIT_ERROR,
                    "error": {"type": type(e).__name__, "message": str(e), "internal": True}},
                   one_line)
        traceback.print_exc()
        return reasons.EXIT_ERROR
    if isinstance(res, Result):
        if as_json:
            print_json({"ok": res.exit_code == 0, **res.data, "exit_code": res.exit_code})
        elif res.text:
            print(res.text)
        return res.exit_code
    return int(res or 0)


if __name__ == "__main__":
    sys.exit(main())
