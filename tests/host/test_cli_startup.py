"""What `mpguard` imports before it runs a command (docs/decisions/0021-cli-startup.md).

Every command pays for the modules imported at its start, and the test suite starts hundreds
of `mpguard` processes: --version, --help and the commands that need no board library import
none of the heavy ones, and an inventory that is up to date is opened without Alembic. Each
check runs the CLI in a fresh interpreter and reads its sys.modules (no timing: the machine
may be busy); the parser a command builds for itself gives the same help as the whole one.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard import cli, project
from mpguard.inventory import Inventory, migrate

# Third-party packages that cost tens to hundreds of milliseconds to import.
HEAVY = ("sqlalchemy", "alembic", "cryptography", "rich", "mpremote", "serial", "psycopg",
         "esptool", "jinja2")
# What `mpguard` imports before it picks the command.
START = {"mpguard", "mpguard.cli", "mpguard.cli.common", "mpguard.reasons", "mpguard.errors"}
# What a command module may import at its top (cli/__init__.py): the rest waits for a handler.
LIGHT = START | {"mpguard.project", "mpguard.files"}

PROBE = """
import contextlib, io, json, sys
from mpguard.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
print(json.dumps({"code": code, "output": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def run_cli(*argv: str, tmp_path: Path, probe: str = PROBE) -> tuple[int, str, set[str]]:
    """`mpguard ARGV` in a new interpreter: (exit code, what it printed, modules imported)."""
    env = dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims"), COLUMNS="80")
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    return res["code"], res["output"], set(res["modules"])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY and "." not in m)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], [], ["no-such-command"]])
def test_version_help_and_usage_errors_import_no_command_and_nothing_heavy(argv, tmp_path):
    code, out, modules = run_cli(*argv, tmp_path=tmp_path)
    assert code == (0 if argv in (["--version"], ["--help"]) else 2), out
    assert heavy(modules) == []
    ours = {m for m in modules if m.startswith("mpguard")}
    assert ours <= START, sorted(ours - START)


@pytest.mark.parametrize("argv", [["sim", "list"], ["sim", "list", "--json"],
                                  ["deploy", "--help"], ["status", "--help"],
                                  ["release", "--help"], ["init", "--help"]])
def test_commands_that_need_no_heavy_library_import_none(argv, tmp_path):
    code, out, modules = run_cli(*argv, tmp_path=tmp_path)
    assert code == 0, out
    assert heavy(modules) == []
    commands = {m for m in modules if m.startswith("mpguard.cli.")} - START
    assert commands == {f"mpguard.cli.{argv[0]}"}  # only the module of the command run


def test_command_modules_import_only_light_modules_at_their_top(tmp_path):
    probe = ("import json, sys\n"
             f"for name in {list(cli.COMMANDS)!r}:\n"
             "    __import__('mpguard.cli.' + name)\n"
             "print(json.dumps({'code': 0, 'output': '', 'modules': sorted(sys.modules)}))")
    _, _, modules = run_cli(tmp_path=tmp_path, probe=probe)
    assert heavy(modules) == []
    ours = {m for m in modules if m.startswith("mpguard") and not m.startswith("mpguard.cli.")}
    assert ours <= LIGHT, sorted(ours - LIGHT)


def test_the_command_run_builds_the_same_parser_as_the_whole_table():
    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
        yield path, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + (name,))

    whole = dict(walk(cli.build_parser()))
    assert dict(walk(cli.build_parser("")))[()] == whole[()]  # `mpguard --help`
    for name in cli.COMMANDS:
        built = dict(walk(cli.build_parser(name)))
        assert built[()] == whole[()], name
        mine = {k: v for k, v in built.items() if k[:1] == (name,)}
        assert mine == {k: v for k, v in whole.items() if k[:1] == (name,)}, name


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    project.init(root, passphrase=None)
    return root


def _revision(root: Path) -> str:
    with sqlite3.connect(root / "inventory.db") as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_an_inventory_at_head_is_opened_without_alembic(tmp_path):
    root = _project(tmp_path)
    Inventory.open(project_root=root).close()  # made and migrated here
    code, out, modules = run_cli("devices", "list", "--project", str(root), tmp_path=tmp_path)
    assert (code, out.strip()) == (0, "no boards in the inventory")
    assert "sqlalchemy" in modules and "alembic" not in modules
    assert {"mpremote", "rich", "psycopg"} & modules == set()


def test_a_new_inventory_is_still_migrated(tmp_path):
    root = _project(tmp_path)
    assert not (root / "inventory.db").exists()
    code, out, modules = run_cli("devices", "list", "--project", str(root), "--json",
                                 tmp_path=tmp_path)
    assert code == 0 and json.loads(out)["devices"] == []
    assert "alembic" in modules
    assert _revision(root) == migrate.HEAD


def test_an_older_inventory_is_still_upgraded(tmp_path):
    root = _project(tmp_path)
    with Inventory.open(project_root=root) as inv:
        migrate.downgrade(inv._engine, "0001")
    assert _revision(root) == "0001"
    code, out, modules = run_cli("devices", "list", "--project", str(root), tmp_path=tmp_path)
    assert code == 0, out
    assert "alembic" in modules
    assert _revision(root) == migrate.HEAD


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`mpguard ... | head`: the reader goes away before the output is written; mpguard ends
    with a shell's SIGPIPE code and no traceback (argparse's --help was quiet already)."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before mpguard writes a byte: every write fails
    try:
        proc = subprocess.run([str(Path(sys.executable).parent / "mpguard"), "sim", "list"],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=60,
                              env=dict(os.environ, MPGUARD_SIM_DIR=str(tmp_path / "sims")))
    finally:
        os.close(w)
    assert proc.returncode == cli.EXIT_PIPE, proc.stderr
    assert proc.stderr == ""
