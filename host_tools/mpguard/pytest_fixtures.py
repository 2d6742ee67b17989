"""The HIL plugin's fixtures for projects, releases and agent-installed boards (a part of
mpguard.pytest_plugin, which registers them; docs/hil.md).

They build on the plugin's `board` and on mpguard.api, the stable Python API, so what a
test does with them is what a script or the CLI does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from .link import BoardLink

if TYPE_CHECKING:
    from .api import Release
    from .project import Project


def _is_sim(target: str) -> bool:
    return target == "sim"


@pytest.fixture
def board_port(board: BoardLink) -> str:
    return board.port


@pytest.fixture
def clean_board(board: BoardLink) -> BoardLink:
    from . import api

    api.wipe(board)
    return board


@pytest.fixture
def mpguard_project(tmp_path_factory: pytest.TempPathFactory, board_target: str,
                    board_kind: str) -> Project:
    from . import api, boards

    # a real board's kind is the agent's to tell: its releases may target any profile
    kinds = [board_kind] if _is_sim(board_target) else boards.profile_kinds()
    return api.new_project(tmp_path_factory.mktemp("project") / "proj", targets=kinds)


@pytest.fixture
def mpguard_release(mpguard_project: Project, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from . import api

    def make(source: str | os.PathLike | dict[str, str | bytes], version: str,
             **options: Any) -> Release:
        if isinstance(source, dict):
            d = tmp_path_factory.mktemp("app") / str(options.get("app") or "app")
            for rel, src in source.items():
                f = d / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(src.encode() if isinstance(src, str) else src)
            source = d
        return api.release(mpguard_project, source, version, **options)

    return make


@pytest.fixture
def agent_board(clean_board: BoardLink, mpguard_project: Project) -> BoardLink:
    from . import api

    api.install_agent(clean_board, mpguard_project, force=True)
    return clean_board
