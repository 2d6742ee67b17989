"""An agent installed as .py (a board whose MicroPython's mpy version differs from mpguard's
mpy-cross) compiles its modules on the board. On the 64 KiB virtual board a secret
command's modules do not fit (their compile leaves the heap in pieces of a few KB): `secret set`, `rotate NAME` and `secret status` are refused with the
typed reason agent_py_heap (exit 4) after one try, not five, and nothing on the board or in
the inventory changes."""

from __future__ import annotations

import json

import pytest
from idhelp import snapshot
from rotcli import inventory_text, provisioned

import mpguard.sim as simlib
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(300)


def test_secret_commands_on_a_py_agent_are_refused_by_name(tmp_path, sim_dir):
    cli = provisioned(tmp_path, sim_dir, "py")  # with the .mpy agent (on .py it may run out)
    cli("agent", "install", "--port", "sim:py", "--format", "py")  # the identity stays
    (cli.cwd / "v.json").write_text('{"user": "u", "password": "never-set-7Hq2"}')
    port = simlib.get("py").port
    with BoardLink(port) as link:
        assert link.exists("/lib/guard/rotate.py") and not link.exists("/lib/guard/rotate.mpy")
        before = snapshot(link)
    assert (cli.cwd / "inventory.db").is_file()  # the project's inventory, the board in it
    db = f"sqlite:///{cli.cwd / 'inventory.db'}"
    inv_before = inventory_text(db)
    resets = simlib.stats("py")["soft_resets"]
    for args in (("secret", "set", "--port", "sim:py", "mqtt", "--from-file", "v.json"),
                 ("rotate", "--port", "sim:py", "mqtt", "--from-file", "v.json"),
                 ("secret", "status", "--port", "sim:py")):
        out = cli.json(*args, code=4)
        assert out["error"]["reason"] == "agent_py_heap", out
        assert "MemoryError" in out["error"]["detail"]
    # refused at the session's first status, before a command is made: one soft reset per
    # session (`secret status` needs none), no tries again
    assert simlib.stats("py")["soft_resets"] - resets == 2
    with BoardLink(port) as link:
        assert snapshot(link) == before
    assert inventory_text(db) == inv_before
    assert "never-set-7Hq2" not in json.dumps(cli.transcript)
