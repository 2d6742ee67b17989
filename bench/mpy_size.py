"""Per-module .mpy size of the agent, against the flash budget (docs/architecture.md 7)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mpguard.agent import package as agentpkg


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        mods = agentpkg.compile_agent(Path(d))
    print(f"## agent .mpy size ({agentpkg.mpy_cross_version()})")
    for m in mods:
        print(f"  {str(m.source):32} {m.size:7d} B")
    total = sum(m.size for m in mods)
    print(f"  {'total':32} {total:7d} B  (budget {agentpkg.FLASH_BUDGET} B)")


if __name__ == "__main__":
    main()
