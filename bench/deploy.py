"""Deploy end to end on the virtual board: time and flash wear per bundle size.

For each case a fresh virtual board gets the agent and app v1, then v2 with a payload of the
given size is deployed (transfer, verify, install, reset, trial boot, confirm). Flash wear is
read from the sim's counters: block erases x 4096 B per payload byte is what the flash
endures (each erase is one cycle of a whole block).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from mpguard import project, sim
from mpguard.agent import install as agent_install
from mpguard.link import BoardLink
from mpguard.updates import deploy, release

CASES = [(64 * 1024, None), (64 * 1024, 115200), (1024 * 1024, None)]
APP = 'import guard\nguard.confirm()\n'


def measure(size: int, baud: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = str(Path(d) / "sims")
        try:
            proj = project.init(Path(d) / "p", passphrase=None, targets=["sim"])
            for v, extra in (("1.0.0", 0), ("2.0.0", size)):
                app = Path(d) / v
                app.mkdir()
                (app / "main.py").write_text(APP)
                if extra:
                    (app / "data.bin").write_bytes(os.urandom(extra))
                release.build_release(proj, app, v, Path(d) / f"{v}.bundle", passphrase=None,
                                      app="bench")
            info = sim.start(name="bench-deploy", baud=baud)
            try:
                with BoardLink(info.port, timeout=300) as link:
                    agent_install.install(link, project.anchor_set(list(proj.anchors().values())))
                    deploy.deploy(link, (Path(d) / "1.0.0.bundle").read_bytes(), wait=20)
                    b2 = (Path(d) / "2.0.0.bundle").read_bytes()
                    s0 = sim.stats("bench-deploy")
                    t0 = time.monotonic()
                    res = deploy.deploy(link, b2, wait=60, timeout=120)
                    dt = time.monotonic() - t0
                    s1 = sim.stats("bench-deploy")
                if res.outcome != "confirmed":
                    raise RuntimeError(f"deploy of {size} B: {res.outcome} {res.reason}")
            finally:
                sim.stop("bench-deploy")
        finally:
            del os.environ["MPGUARD_SIM_DIR"]
    return {"size": size, "bundle": len(b2), "seconds": dt,
            "erases": s1["erases"] - s0["erases"], "writes": s1["writes"] - s0["writes"]}


def main() -> None:
    print("## deploy on the virtual board (transfer + verify + install + reboot + confirm)")
    for size, baud in CASES:
        r = measure(size, baud)
        link = f"{baud} baud" if baud else "unthrottled"
        wear = r["erases"] * 4096 / r["size"]
        print(f"  {r['size'] // 1024:5d} KiB payload, {link:12} {r['seconds']:6.2f} s, "
              f"{r['erases']:4d} block erases = {wear:4.2f} flash bytes erased per payload byte, "
              f"{r['writes']} program ops")


if __name__ == "__main__":
    main()
