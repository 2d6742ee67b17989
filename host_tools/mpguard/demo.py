"""`make demo`: the mpguard story. Until the virtual board exists, it runs the agent
on the MicroPython unix port and shows what it reports."""

from __future__ import annotations

import json

from . import agentpkg, unixport


def main() -> int:
    print("mpguard demo: running the agent on the MicroPython unix port (heap 64 KiB)")
    res = unixport.run("import guard.info\nOUT(guard.info.facts())", path=[agentpkg.agent_dir()])
    print(json.dumps(res.out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
