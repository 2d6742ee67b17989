"""Heap the agent holds while a confirmed app runs after a normal boot (a budget figure).

On the MicroPython unix port, with the agent compiled to .mpy as on a board: a littlefs2
flash (tests/agent/mp/_flash.py) holding the agent in /lib/guard and a confirmed app in slot a,
then the agent's own /main.py stub runs as the board runs it (select slot, count trial boots,
run the app). The app measures `gc.mem_alloc()` after `gc.collect()`: the live heap, minus the
same figure taken just before the stub ran and minus what the app alone holds (its main.py run
directly, without the agent), is what the agent's boot path keeps loaded (its modules and
state) for as long as the app runs. Allocation is deterministic, so the figure is too.
The measurement itself is tests/agent/agentboard.py's boot_heap (tests/agent/test_boot.py
checks which modules a boot loads).
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _agentboard():
    spec = importlib.util.spec_from_file_location(
        "agentboard", ROOT / "tests" / "agent" / "agentboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    board = _agentboard()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = board.compile_board(tmp / "agent")
        held, mods = board.boot_heap(agent, tmp)
        app, _ = board.boot_heap(agent, tmp, direct=True)
    print("## normal boot (agent .mpy on the MicroPython unix port, confirmed app)")
    print(f"  live heap while the app runs: {held} B over the bare board, of which the agent's "
          f"boot path {held - app} B (modules: {', '.join(mods)}), the app itself {app} B")


if __name__ == "__main__":
    main()
