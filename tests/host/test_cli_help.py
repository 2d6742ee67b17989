"""Every command's --help lists its exit codes (issue #15 item 12), found by walking the
command table itself, so a new command cannot forget them; and the stable Python API keeps
its names and signatures (what HIL suites of other projects call)."""

from __future__ import annotations

import argparse
import inspect

from mpguard import api, cli


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, path + (name,))


def test_every_command_help_lists_its_exit_codes(capsys):
    found = list(_commands(cli.build_parser()))
    names = {" ".join(p) for p, _ in found}
    assert {"deploy", "status", "agent install", "agent uninstall", "sim cut", "demo"} <= names
    for path, parser in found:
        assert parser.epilog and parser.epilog.startswith("exit codes: 0 success"), path
        parser.print_help()
        assert "exit codes:" in capsys.readouterr().out, path


# The stable API: name -> its parameters. Adding a keyword-only parameter with a default is
# compatible; anything else here changing breaks HIL suites of other projects.
STABLE = {
    "new_project": ["directory", "targets", "passphrase"],
    "open_project": ["directory"],
    "release": ["proj", "appdir", "version", "out", "app", "passphrase", "options"],
    "connect": ["port", "timeout"],
    "install_agent": ["board", "proj", "force", "kind", "deadline"],
    "uninstall_agent": ["board", "force"],  # force (keyword): 2026-11-27
    "deploy": ["board", "bundle", "wait", "deadline"],
    "explain": ["result"],
    "status": ["board"],
    "wipe": ["board", "keep"],
}


def test_the_python_api_keeps_its_names_and_signatures():
    for name, params in STABLE.items():
        assert name in api.__all__
        assert list(inspect.signature(getattr(api, name)).parameters) == params, name
    for cls in ("BoardLink", "BoardStatus", "DeployResult", "InstallReport", "Release",
                "UninstallReport", "MpguardError", "Project"):
        assert cls in api.__all__ and inspect.isclass(getattr(api, cls))
    for name, fields in {"Release": ["path", "data", "app", "version", "seq", "summary"]}.items():
        assert list(inspect.signature(getattr(api, name)).parameters) == fields
    for method in ("exec", "eval", "call", "stream", "put", "get", "listdir", "exists", "sha256",
                   "remove", "mkdir", "rmtree", "wipe", "soft_reset", "hard_reset", "reboot",
                   "reconnect", "detached", "set_deadline", "console_since", "close"):
        assert callable(getattr(api.BoardLink, method)), method


def test_every_doc_names_bundle_files_the_same_way():
    # issue #15 item 12: one name for bundle files (`.bundle`) in the README, docs and examples
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = [root / "README.md", *(root / "docs").rglob("*.md"), *(root / "examples").rglob("*.md")]
    built = re.compile(r"release build [^\n`|]*?(?:-o|--output) +(\S+)")
    deployed = re.compile(r"mpguard deploy(?: +--?[a-z-]+(?: +(?!-)[^\s`]+)?)* +([^\s`-][^\s`]*)")
    names = [(f.name, m.group(1)) for f in files for pat in (built, deployed)
             for m in pat.finditer(f.read_text())]
    assert len(names) > 5
    assert [n for n in names if not n[1].rstrip("`").endswith((".bundle", "BUNDLE"))] == []
