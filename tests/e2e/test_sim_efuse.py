"""eFuses burned with the real espefuse (--virt) read the same on the virtual board."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard import boards

ROOT = Path(__file__).resolve().parents[2]
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")

pytestmark = pytest.mark.timeout(180)


def _espefuse(path: Path, *args: str) -> None:
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", "esp32", *args],
                   check=True, capture_output=True, timeout=120)


def test_burned_field_agrees_with_espefuse_summary(sim_factory, mpr, tmp_path):
    efuse = tmp_path / "efuse.bin"
    _espefuse(efuse, "--do-not-confirm", "burn-efuse", "JTAG_DISABLE", "1")
    summary = tmp_path / "summary.json"
    _espefuse(efuse, "summary", "--format", "json", "--file", str(summary))
    want = json.loads(summary.read_text())
    assert want["JTAG_DISABLE"]["value"] is True  # the burn really happened

    port = sim_factory(efuse=str(efuse)).port
    # the agent itself (guard.hw over _simhw), copied to the board's /lib like a user would
    mpr(port, "fs", "mkdir", ":lib", "+", "fs", "mkdir", ":lib/guard",
        "+", "fs", "cp", str(ROOT / "agent/guard/__init__.py"), ":lib/guard/__init__.py",
        "+", "fs", "cp", str(ROOT / "agent/guard/hw.py"), ":lib/guard/hw.py")
    prof = boards.load_profile("sim")
    got = json.loads(mpr(port, "exec", "import json, guard.hw as hw\n"
                         "print(json.dumps({f: hw.efuse(f) for f in hw.FACTS}))").stdout)
    assert got["jtag_disable"] == {"JTAG_DISABLE": 1}
    for fact, spec in prof["efuse"].items():
        for field in spec["fields"]:
            name = field["field"]
            raw = want[name]["value"]
            assert got[fact][name] == int(raw), (fact, name)
