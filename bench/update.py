"""Installing an update bundle on the agent (MicroPython unix port, littlefs2 flash).

Prints, for a 64 KiB and a 1 MiB bundle: the smallest heap the install completes in (bisected
`-X heapsize`, 256-byte steps) against the agent idle with the same modules loaded, the flash
block writes, and the wall time of one install (reported, never asserted).

Then the heap headroom of an install at the limits (issue #14): a small release, a release of
32 files with the manifest at its 4 KiB limit, and a small release after that one (each step a
boot of its own), for each board profile: the profile's heap minus what the install needs above
the idle board. Two ways to have the agent on a board: as .mpy files on its flash (`mpguard
agent install`: modules load when a step needs them, guard.rpc and guard.xfer as in a deploy)
and with every module loaded before (a firmware with the agent frozen in holds them too, but in
flash: its heap need is the "above the loaded agent" column). The unix port is 64-bit: objects
and bytecode take more heap than on an ESP32.
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
                path=[agent], heapsize="128K").out  # the test harness loads every module: its
            wall = time.perf_counter() - t0  # heap is not the board's (min heap above is)
            if status != "installed":
                raise SystemExit(f"bench.update: the {label} install was {status}: no figure")
            print(f"  install {label:7} bundle ({len(data)} B): {status}, min heap {need} B "
                  f"(+{need - idle} B over idle; budget 24576 B), {writes} block writes, "
                  f"{us / 1000:.0f} ms on the device ({wall:.2f} s with process start)")
    headroom()


def headroom() -> None:
    board = _agentboard()
    from mpguard import boards

    profiles = sorted((boards.load_profile(k)["heap_bytes"], k) for k in boards.profile_kinds())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        agent = board.compile_board(tmp / "agent")
        signer = board.Signer()
        small = signer.bundle(board.app("2.0"), seq=2)
        big = board.max_release(signer, seq=1)
        cases = [("small release", [small]), ("32 files, 4 KiB manifest", [board.max_release(signer, seq=2)]),
                 ("small after the 32-file one", [big, small])]
        print("## install heap at the limits, per board profile (unix port, 64-bit)")
        print(f"  maximal release: {len(big)} B bundle, 32 files")
        for lazy in (True, False):
            print("  agent as .mpy on flash, loaded step by step" if lazy else
                  "  every agent module loaded first (frozen-like)")
            for label, seq in cases:
                need, idle = board.min_heap_sequence(agent, tmp, signer.anchor_json, seq, lazy=lazy)
                room = ", ".join(f"{k} {h - (need - idle):+d}" for h, k in profiles)
                print(f"    {label:28s} needs {need - idle:6d} B above the idle board "
                      f"(idle {idle} B, total {need} B); headroom: {room}")


if __name__ == "__main__":
    main()
