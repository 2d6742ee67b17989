"""One table of reasons: every reason the agent can raise has a message and a hint."""

from __future__ import annotations

import re
from pathlib import Path

from mpguard import reasons

AGENT = Path(__file__).resolve().parents[2] / "agent"


def agent_reasons() -> set[str]:
    found: set[str] = set()
    for p in AGENT.rglob("*.py"):
        found |= set(re.findall(r'GuardError\(\s*"([a-z_0-9]+)"', p.read_text()))
    return found


def test_every_agent_reason_has_message_and_hint():
    got = agent_reasons()
    assert len(got) > 20  # the scan finds the agent's reasons at all
    missing = sorted(r for r in got if r not in reasons.REASONS)
    assert not missing, f"reasons without a message in mpguard.reasons: {missing}"
    for r in got:
        msg, hint = reasons.REASONS[r]
        assert msg and hint, r


def test_message_and_unknown_reason():
    assert reasons.message("rollback").startswith("the bundle is older")
    assert reasons.message("bad_path", "a/../b") .endswith("(a/../b)")
    assert reasons.message("no_such_reason") == "no_such_reason"


def test_exit_codes_are_distinct_and_described():
    codes = [v for k, v in vars(reasons).items() if k.startswith("EXIT_") and isinstance(v, int)]
    assert len(codes) == len(set(codes))
    assert set(codes) == set(reasons.EXIT_CODES)


def test_a_boards_memory_error_says_what_helps():
    from mpguard.errors import DeviceError, DeviceRefused

    e = DeviceError("board raised MemoryError: memory allocation failed", "MemoryError")
    assert e.hint == reasons.MEMORY_HINT and "--format mpy" in e.hint
    assert DeviceError("board raised OSError: 2", "OSError").hint == ""
    assert DeviceRefused("no_memory", "x").hint == ""  # a refusal's hint is its reason's
