"""Fixtures shared by the agent's update tests (the board itself is agentboard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentboard import Board, Signer, compile_board


@pytest.fixture(scope="session")
def agent_mpy(tmp_path_factory) -> Path:
    """The agent and the device-side test support compiled to .mpy (a sys.path entry)."""
    return compile_board(tmp_path_factory.mktemp("agent_mpy"))


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="session")
def other_signer() -> Signer:
    return Signer()


@pytest.fixture
def fboard(mp, agent_mpy, tmp_path, signer) -> Board:
    """A formatted board holding the signer's trust anchors."""
    b = Board(mp, agent_mpy, tmp_path / "flash.img")
    b.run("provision(IN['anchors'])\nOUT(1)", anchors=signer.anchor_json)
    return b
