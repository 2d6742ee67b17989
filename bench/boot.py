"""Heap the agent holds while a confirmed app runs after a normal boot (DESIGN.md 6).

On the MicroPython unix port, with the agent compiled to .mpy as on a board: a littlefs2
flash (tests/agent/mp/_flash.py) holding the agent in /lib/guard and a confirmed app in slot a,
then the agent's own
/main.py stub runs as the board runs it (select slot, count trial boots, run the app). The
app measures `gc.mem_alloc()` after `gc.collect()`: the live heap, minus the same figure
taken just before the stub ran, is what the agent's boot path keeps loaded (its modules and
state) for as long as the app runs. The modules of the `guard` package that are loaded are
listed too. Allocation is deterministic, so the figure is too.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

from mpguard import unixport
from mpguard.agent import package as agentpkg

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = 64

# The board: flash mounted at /, the agent's .mpy files in /lib/guard, a confirmed app written
# with the state file's format (docs/decisions/0006-install.md), then the agent's /main.py stub.
_BOARD = """
import gc, os, sys
from _flash import Flash, mount
agent = [(n, open(p, "rb")) for n, p in IN["agent"]]  # opened before / becomes the flash
mount(Flash(IN["flash"], IN["blocks"]), True)
for d in ("/lib", "/lib/guard", "/mpguard", "/app", "/app/a"):
    os.mkdir(d)
for n, f in agent:
    with open("/lib/guard/" + n, "wb") as g:
        g.write(f.read())
    f.close()
sys.path[:] = ["", "/lib"]  # as on a board: the agent loads from /lib/guard on flash
agent = f = g = None
with open("/app/a/main.py", "w") as f:
    f.write(IN["app"])
with open("/mpguard/state.json", "w") as f:
    f.write(IN["state"])
stub = IN["stub"]
IN = None
gc.collect()
OUT(gc.mem_alloc())
exec(stub, {"__name__": "__main__"})
"""

_APP = """\
import gc, sys
gc.collect()
print('HEAP', gc.mem_alloc(), ' '.join(sorted(m for m in sys.modules if m.startswith('guard'))))
"""

_STATE = {"v": 1, "active": "a", "seq": 1, "app": "demo", "ver": "1.0.0", "digest": "0" * 64,
          "floor": 0, "max_boots": 3, "trial": None, "last": None}


def _agentboard():
    spec = importlib.util.spec_from_file_location(
        "agentboard", ROOT / "tests" / "agent" / "agentboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(agent: Path, tmp: Path) -> tuple[int, list[str]]:
    """(live heap the agent holds while the app runs, guard modules loaded)."""
    img = tmp / "boot.img"
    img.write_bytes(b"\xff" * (4096 * BLOCKS))
    stub = (agentpkg.agent_dir() / "main.py").read_text()
    mpys = [[p.name, str(p)] for p in sorted((agent / "guard").glob("*.mpy"))]
    res = unixport.run(_BOARD, {"flash": str(img), "blocks": BLOCKS, "app": _APP, "agent": mpys,
                                "state": json.dumps(_STATE), "stub": stub},
                       path=[agent], heapsize="64K")
    base = res.out
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("HEAP ")]
    if not line:
        raise RuntimeError(f"the app did not run:\n{res.stdout}")
    _, alloc, *mods = line[0].split(" ")
    return int(alloc) - base, mods


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = _agentboard().compile_board(tmp / "agent")
        held, mods = measure(agent, tmp)
    print("## normal boot (agent .mpy on the MicroPython unix port, confirmed app)")
    print(f"  live heap held by the agent while the app runs: {held} B "
          f"(modules: {', '.join(mods)})")


if __name__ == "__main__":
    main()
