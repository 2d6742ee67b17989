"""`mpremote mip install agent/package.json` (the micropython-lib way) installs the whole agent."""

from __future__ import annotations

import pytest

from mpguard.agent import package as agentpkg

pytestmark = pytest.mark.timeout(120)


def test_mip_installs_every_agent_module(sim_factory, mpr):
    port = sim_factory().port
    res = mpr(port, "mip", "install", str(agentpkg.agent_dir() / "package.json"))
    assert "Done" in res.stdout
    out = mpr(port, "exec", "import os, guard.info\nprint(sorted(os.listdir('/lib/guard')))\n"
              "print(guard.info.facts()['agent'])").stdout.split("\n")
    want = sorted(p.name for p in agentpkg.agent_modules())
    assert out[0].strip() == str(want)
    assert out[1].strip() == agentpkg.package_json()["version"]
