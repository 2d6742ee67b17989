"""Installing an update bundle on the agent (MicroPython unix port, littlefs2 flash).

Prints, for a 64 KiB and a 1 MiB bundle: the smallest heap the install completes in (bisected
`-X heapsize`, 256-byte steps) against the agent idle with the same modules loaded, the flash
block writes, and the wall time of one install (reported, never asserted).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from mpguard import unixport

ROOT = Path(__file__).resolve().parents[1]


def _agentboard():
    """tests/agent/agentboard.py: the agent's test board (one flash block device)."""
    path = ROOT / "tests" / "agent" / "agentboard.py"
    spec = importlib.util.spec_from_file_location("agentboard", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    board = _agentboard()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = board.compile_board(tmp / "agent")
        signer = board.Signer()
        idle = board.min_heap(agent, tmp, None, signer.anchor_json, blocks=512)
        print("## update install (agent on the MicroPython unix port, littlefs2, 4 KiB blocks)")
        print(f"  agent idle (modules loaded, flash mounted): min heap {idle} B")
        for label, extra in (("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024 - 200)):
            b = tmp / "b.mpgb"
            data = signer.bundle(board.app("1.0", extra=extra), seq=1)
            b.write_bytes(data)
            need = board.min_heap(agent, tmp, b, signer.anchor_json, blocks=512)
            img = tmp / "flash.img"
            img.write_bytes(b"\xff" * (4096 * 512))
            code = board.PRELUDE + (
                "provision(IN['anchors'])\n"
                "import time\n"
                "t = time.ticks_us()\n"
                "r = install(0)\n"
                "OUT([r['status'], time.ticks_diff(time.ticks_us(), t), FL.writes])\n"
            )
            t0 = time.perf_counter()
            status, us, writes = unixport.run(
                code, {"flash": str(img), "blocks": 512, "bundles": [str(b)], "mkfs": True,
                       "anchors": signer.anchor_json},
                path=[agent], heapsize="64K").out
            wall = time.perf_counter() - t0
            print(f"  install {label:7} bundle ({len(data)} B): {status}, min heap {need} B "
                  f"(+{need - idle} B over idle; budget 24576 B), {writes} block writes, "
                  f"{us / 1000:.0f} ms on the device ({wall:.2f} s with process start)")


if __name__ == "__main__":
    main()
