"""A normal boot loads the boot path only (guard.boot + guard.state), never the install path.

The board (agentboard.boot_heap): the agent as .mpy in /lib/guard on a littlefs2 flash, a
confirmed app in slot a, and the agent's real /main.py stub. The app lists the `guard`
modules loaded while it runs. bench/boot.py prints the heap figures of the same run.
"""

from __future__ import annotations

from agentboard import boot_heap


def test_normal_boot_loads_only_the_boot_path(agent_mpy, tmp_path):
    held, mods = boot_heap(agent_mpy, tmp_path)
    assert mods == ["guard", "guard.boot", "guard.state"]
    app, app_mods = boot_heap(agent_mpy, tmp_path, direct=True)
    assert app_mods == []  # the app run without the agent: nothing of it loaded
    assert held > app  # the agent's modules and state are counted
