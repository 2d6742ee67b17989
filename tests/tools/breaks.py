"""Deliberate breaks of the update path's security checks, one at a time (mutation test).

Each break replaces one snippet of a security check (exactly one occurrence) in a copy of
the repository, runs the tests that should notice (``pytest -x``), and restores the file. A
break the tests notice is *caught*; one they miss is *missed* and printed. The catch rate is
the figure issue #14 asks for (aim: 95 %); the last one measured is in README.md's Numbers.

A break that changes no behaviour any input can show (an equivalent mutant: another check
refuses the same input with the same reason, or the case cannot arise) is listed with
``equivalent="why"``: it is not run and not counted, only checked to still apply
(``--equivalent`` runs those too).

Run from a scratch copy of the repository, never from a working tree with uncommitted work
(the script edits files in place and restores them afterwards)::

    python tests/tools/breaks.py [--root DIR] [--only SUBSTRING] [--list] [--check] [--equivalent]

``--check`` only checks that every snippet still occurs exactly once (no test runs). The exit
status is 1 when a break is stale.

With the host package installed in editable mode from another checkout, put this copy's
``host_tools`` first: ``PYTHONPATH=host_tools python tests/tools/breaks.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Test sets (relative to the repository root), cheapest and most discriminating first.
AGENT_UPDATE = ["tests/agent/test_bundle_bad.py", "tests/agent/test_update.py",
                "tests/agent/test_update_trial.py",
                "tests/agent/test_manifest_rules.py", "tests/agent/test_update_limits.py",
                "tests/agent/test_bundle_fuzz.py", "tests/agent/test_update_powercut.py",
                "tests/agent/test_update_heap.py", "tests/agent/test_rpc.py",
                "tests/agent/test_boot.py"]
AGENT_CRYPTO = ["tests/agent/test_jws.py", "tests/agent/test_p256.py", "tests/agent/test_anchor_tables.py",
                "tests/agent/test_bundle_bad.py"]
AGENT_XFER = ["tests/agent/test_xfer.py", "tests/agent/test_xfer_deflate.py"]
HOST = ["tests/host/test_jose.py", "tests/host/test_bundle.py", "tests/host/test_cli_release.py",
        "tests/host/test_cli_json.py", "tests/agent/test_manifest_rules.py"]

# (name, file, snippet, replacement, tests, why it is equivalent or None)
BREAKS: list[tuple[str, str, str, str, list[str], str | None]] = []


def brk(name: str, path: str, old: str, new: str, tests: list[str],
        equivalent: str | None = None) -> None:
    BREAKS.append((name, path, old, new, tests, equivalent))


def load(module: str) -> None:
    """The list of breaks for the code as it is (tests/tools/breaks_list.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("breaks_list", Path(__file__).with_name(module))
    mod = importlib.util.module_from_spec(spec)
    mod.brk = brk
    mod.AGENT_UPDATE, mod.AGENT_CRYPTO, mod.AGENT_XFER, mod.HOST = (
        AGENT_UPDATE, AGENT_CRYPTO, AGENT_XFER, HOST)
    spec.loader.exec_module(mod)


def run_one(root: Path, name: str, path: str, old: str, new: str, tests: list[str],
            timeout: float) -> tuple[str, float]:
    f = root / path
    src = f.read_text()
    n = src.count(old)
    if n != 1:
        return f"stale ({n} matches)", 0.0
    tests = [t for t in tests if (root / t.split("::")[0]).exists()]  # (a file or a test in it)
    f.write_text(src.replace(old, new))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             "--timeout", "600", *tests],
            cwd=root, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, PYTHONPATH=str(root / "host_tools")))
        result = "caught" if proc.returncode != 0 else "MISSED"
    except subprocess.TimeoutExpired:
        result = "caught (timeout)"
    finally:
        f.write_text(src)
    return result, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT))
    ap.add_argument("--list-file", default="breaks_list.py")
    ap.add_argument("--only", default="")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="only check that every snippet occurs exactly once")
    ap.add_argument("--equivalent", action="store_true",
                    help="run the breaks marked equivalent too (they are never counted)")
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    load(a.list_file)
    root = Path(a.root)
    todo = [b for b in BREAKS if a.only in b[0]]
    if a.list:
        for b in todo:
            print(b[0] + (f"  (equivalent: {b[5]})" if b[5] else ""))
        return 0
    if a.check:
        bad = [(b[0], n) for b in todo if (n := (root / b[1]).read_text().count(b[2])) != 1]
        for name, n in bad:
            print(f"stale ({n} matches)  {name}")
        print(f"{len(todo) - len(bad)} of {len(todo)} breaks apply")
        return 1 if bad else 0
    caught = missed = stale = equivalent = 0
    for name, path, old, new, tests, equiv in todo:
        if equiv:
            n = (root / path).read_text().count(old)
            if n != 1:
                res, secs = f"stale ({n} matches)", 0.0
            elif not a.equivalent:
                equivalent += 1
                print(f"{'equivalent':18s} {'':7s}  {name}: {equiv}", flush=True)
                continue
            else:
                res, secs = run_one(root, name, path, old, new, tests, a.timeout)
                equivalent += 1
                print(f"{'equivalent, ' + res:18s} {secs:6.1f}s  {name}", flush=True)
                continue
        else:
            res, secs = run_one(root, name, path, old, new, tests, a.timeout)
        print(f"{res:18s} {secs:6.1f}s  {name}", flush=True)
        if res.startswith("caught"):
            caught += 1
        elif res == "MISSED":
            missed += 1
        else:
            stale += 1
    total = caught + missed
    print(f"\n{caught}/{total} breaks caught ({100 * caught / max(total, 1):.1f} %), "
          f"{missed} missed, {stale} stale; {equivalent} equivalent (not counted)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
