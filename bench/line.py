"""The production line on virtual boards: boards per hour for 1, 4, 8 and 16 boards in
parallel at 115200 baud, in the same run, the scaling against one board, and where the time
goes per step.

Each case starts fresh virtual boards (--baud 115200: the UART's byte rate, as on a board),
runs one station over them (library level: mpguard.line.run) with the steps agent, harden
(eFuses burned on their `espefuse --virt` files), deploy of a 16 KiB app and, when device
identity is in this build, provision and attest; boards per hour = boards / wall time.
Scaling at N = (boards per hour at N) / (N x boards per hour at 1): 1.0 is linear.

    python -m bench.line [--sizes 1,4,8,16] [--baud 115200] [--app-kib 16] [--steps transfer]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mpguard import project
from mpguard.line import ports, sims, station
from mpguard.line import run as line_run
from mpguard.updates import release

APP = 'import guard\nguard.confirm()\n'


def _identity() -> bool:
    try:
        import mpguard.identity.provision  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def setup(d: Path, app_kib: int, which: str) -> tuple[Path, str]:
    proj = project.init(d / "proj", passphrase=None, targets=["sim"])
    app = d / "app"
    app.mkdir()
    (app / "main.py").write_text(APP)
    (app / "data.bin").write_bytes(os.urandom(app_kib * 1024))
    release.build_release(proj, app, "1.0.0", d / "app.bundle", passphrase=None, app="bench")
    steps = 'agent = true\nharden = { profile = "production" }\ndeploy = "app.bundle"\n'
    if which == "transfer":  # what goes over the UART only
        return proj.root, 'agent = true\ndeploy = "app.bundle"\n'
    if _identity():
        steps = ('agent = true\nprovision = true\nharden = { profile = "production" }\n'
                 'deploy = "app.bundle"\nattest = true\n')
    return proj.root, steps


def case(d: Path, root: Path, steps: str, n: int, baud: int) -> dict[str, object]:
    name = f"b{n}"
    path = d / f"{name}.toml"
    path.write_text(f'[station]\nname = "{name}"\noperator = "bench"\nbatch = "{name}"\n'
                    f'project = "proj"\nparallel = {n}\n\n[steps]\n{steps}')
    names = sims.start(root, name, n, baud=baud)
    try:
        st = station.load(path)
        ctx, line, key = line_run.prepare(st, passphrase=None, burn=True)
        per_step: dict[str, list[float]] = defaultdict(list)

        def on(e: object, rows: object) -> None:
            data = getattr(e, "data", {})
            if getattr(e, "kind", "") == "step" and data.get("status") == "done":
                per_step[data["step"]].append(float(data["seconds"]))

        t0 = time.monotonic()
        sr = line_run.StationRun(ctx, line, key, ports.parse(f"sim:{sims.pattern(name)}"),
                                 count=n, on_event=on)
        summ = sr.run()
        wall = time.monotonic() - t0
        ctx.inventory.close()
    finally:
        sims.stop(names)
    return {"n": n, "passed": summ.passed, "failed": summ.failed, "wall": wall,
            "per_hour": 3600 * summ.passed / wall,
            "steps": {k: statistics.mean(v) for k, v in per_step.items()}}


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # `make bench`: both, the transfer-only case first
        main(["--steps", "transfer", "--app-kib", "64"])
        main(["--steps", "full"])
        return
    p = argparse.ArgumentParser(prog="python -m bench.line")
    p.add_argument("--sizes", default="1,4,8,16")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--app-kib", type=int, default=16)
    p.add_argument("--steps", choices=["full", "transfer"], default="full",
                   help="full: every step this build has; transfer: agent and deploy only")
    a = p.parse_args(argv)
    sizes = [int(x) for x in a.sizes.split(",")]
    with tempfile.TemporaryDirectory() as d:
        os.environ["MPGUARD_SIM_DIR"] = str(Path(d) / "sims")
        root, steps = setup(Path(d), a.app_kib, a.steps)
        rows = [case(Path(d), root, steps, n, a.baud) for n in sizes]
    one = next((r for r in rows if r["n"] == 1), None)
    print(f"line: virtual boards at {a.baud} baud, steps "
          f"{', '.join(station.STEPS[i] for i in range(6) if station.STEPS[i] + ' =' in steps)}, "
          f"{a.app_kib} KiB app")
    for r in rows:
        scale = (r["per_hour"] / (r["n"] * one["per_hour"])) if one else float("nan")  # type: ignore[operator]
        st = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps"].items())  # type: ignore[union-attr]
        print(f"  {r['n']:>2} boards: {r['passed']} passed, {r['failed']} failed, "
              f"{r['wall']:.1f} s, {r['per_hour']:.0f} boards/hour, scaling {scale:.2f} x linear; "
              f"per step (mean): {st}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
