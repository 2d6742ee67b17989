"""guard.hw eFuse posture read on the MicroPython unix port: heap allocated and time per read,
with a machine stand-in serving the words of a real `espefuse --virt` file (docs/architecture.md 7)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpguard import boards, efuse, unixport
from mpguard.agent import package as agentpkg

_ROUNDS = 200

_CODE = """
import gc, time
import guard.hw as hw
class Mem:
    def __init__(self, w):
        self.w = w
    def __getitem__(self, a):
        return self.w.get(a, 0)
class M:
    pass
m = M()
m.mem32 = Mem({int(k): v for k, v in IN['words'].items()})
hw.use(mach=m)
p = IN['p']
gc.collect()
gc.disable()
base = gc.mem_alloc()
f = hw.efuse_facts(p)
alloc = gc.mem_alloc() - base
gc.enable()
t = time.ticks_us()
for _ in range(IN['n']):
    f = hw.efuse_facts(p)
dt = time.ticks_diff(time.ticks_us(), t)
OUT([dt / IN['n'], alloc])
"""


def main() -> None:
    print("## guard.hw eFuse facts (unix port, -X heapsize=64K)")
    espefuse = str(Path(sys.executable).parent / "espefuse")
    for kind in ("esp32", "esp32c3"):
        profile = boards.load_profile(kind)
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "efuse.bin"
            subprocess.run([espefuse, "--virt", "--path-efuse-file", str(f), "--chip",
                            profile["chip"], "summary"], capture_output=True, check=True)
            t = time.perf_counter()
            words = efuse.efuse_words(f, profile)
            host_us = (time.perf_counter() - t) * 1e6
        res = unixport.run(_CODE, {"words": {str(a): w for a, w in words.items()},
                                   "p": profile, "n": _ROUNDS},
                           path=[agentpkg.agent_dir()]).out
        print(f"  {kind:8} efuse_facts: {res[0]:8.1f} us/read on device, heap allocated per read "
              f"{res[1]} B; host efuse_words {host_us:.0f} us")


if __name__ == "__main__":
    main()
