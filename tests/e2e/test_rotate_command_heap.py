"""A secret command that never fits the board's heap (the compiled agent, a board whose app
holds memory from boot.py): the host sends it again, made anew, on a fresh heap each time, then
refuses with the typed reason command_heap (exit 4, no retry of its own) once the board's
status shows it was not kept; nothing on the board or in the inventory changes. With the heap
back, the same command works."""

from __future__ import annotations

import json

import pytest
from idhelp import snapshot
from rotcli import inventory_text, provisioned

import mpguard.sim as simlib
from mpguard.link import BoardLink
from mpguard.rotate import secrets

pytestmark = pytest.mark.timeout(300)

# held from boot.py on, in the REPL's globals (the agent's commands run beside it): more than a
# secret command's headroom (under 6 KiB: bench/rotate.py), less than the status it reads first
BALLAST = 12 * 1024
BOOT = f"_ballast = bytearray({BALLAST})\n".encode()


def test_a_command_that_never_fits_is_tried_then_refused_command_heap(tmp_path, sim_dir):
    cli = provisioned(tmp_path, sim_dir, "h")  # with the .mpy agent
    (cli.cwd / "v.json").write_text('{"user": "u", "password": "never-set-Qx81"}')
    port = simlib.get("h").port
    with BoardLink(port) as link:
        assert link.exists("/lib/guard/rotate.mpy")  # the compiled agent: tried again
        link.put(BOOT, "/boot.py")
        before = snapshot(link)
    db = f"sqlite:///{cli.cwd / 'inventory.db'}"
    inv_before = inventory_text(db)
    resets = simlib.stats("h")["soft_resets"]
    out = cli.json("secret", "set", "--port", "sim:h", "mqtt", "--from-file", "v.json", code=4)
    assert out["error"]["reason"] == "command_heap", out
    assert f"{secrets.ATTEMPTS} tries" in out["error"]["detail"]
    # a fresh heap (soft reset) for the session's first status, before each of the tries, and
    # for the status that shows the last one was not kept
    assert simlib.stats("h")["soft_resets"] - resets == 1 + secrets.ATTEMPTS + 1
    with BoardLink(port) as link:
        assert snapshot(link) == before
    assert inventory_text(db) == inv_before
    assert "mqtt" not in cli.json("secret", "status", "--port", "sim:h")["secrets"]
    with BoardLink(port) as link:
        link.remove("/boot.py")
    # the heap back: the same command, the same board, works
    done = cli.json("secret", "set", "--port", "sim:h", "mqtt", "--from-file", "v.json")
    assert done["outcome"] == "set", done
    assert cli.json("secret", "status", "--port", "sim:h")["secrets"]["mqtt"]["epoch"] == 1
    assert "never-set-Qx81" not in json.dumps(cli.transcript)
