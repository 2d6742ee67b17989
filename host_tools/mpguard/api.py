"""mpguard's Python API for scripts and hardware-in-the-loop suites: the stable names.

What the CLI does, as functions that work on a `BoardLink` you already hold (the HIL
plugin's `board` fixture holds the port, so a `mpguard` subprocess could not open it):

    from mpguard import api
    proj = api.new_project(tmp_path / "proj", targets=["sim"])  # or api.open_project(path)
    rel = api.release(proj, "app/", "1.0.0")                     # a signed bundle (Release)
    with api.connect("/dev/ttyUSB0") as board:                   # or the `board` fixture
        api.install_agent(board, proj)
        res = api.deploy(board, rel)                             # res.outcome == "confirmed"
        st = api.status(board)                                   # st.update["ver"] == "1.0.0"
        api.uninstall_agent(board)                               # the board as it was
        api.wipe(board)                                          # or: an empty filesystem

Everything here is kept stable across minor versions (tests/host/test_cli_help.py pins
the names and signatures); anything else in mpguard may change. Errors are the classes of
`mpguard.errors` (`MpguardError` and below), each with an `exit_code`; the result objects
(`Release`, `DeployResult`, `InstallReport`, `UninstallReport`, `BoardStatus`) have
`as_dict()` giving what the CLI's `--json` gives. docs/hil.md has the whole picture.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import project as _project
from .agent import install as _install
from .agent import status as _status
from .agent import uninstall as _uninstall
from .agent.install import InstallReport
from .agent.status import BoardStatus
from .agent.uninstall import UninstallReport
from .errors import MpguardError
from .keys import PASSPHRASE_ENV
from .link import BoardLink
from .project import Project
from .updates import deploy as _deploy
from .updates import explain as _explain
from .updates import release as _release
from .updates.deploy import DeployResult

__all__ = [
    "BoardLink", "BoardStatus", "DeployResult", "InstallReport", "MpguardError", "Project",
    "Release", "UninstallReport", "connect", "deploy", "explain", "install_agent",
    "new_project", "open_project", "release", "status", "uninstall_agent", "wipe",
]


@dataclass
class Release:
    """A signed bundle: its file, its bytes and what `mpguard release build` reported."""

    path: Path
    data: bytes
    app: str
    version: str
    seq: int
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("data")
        d["path"] = str(self.path)
        return d


def _passphrase(passphrase: str | bytes | None) -> bytes | None:
    if isinstance(passphrase, str):
        return passphrase.encode()
    return passphrase


def new_project(directory: str | Path, *, targets: list[str] | None = None,
                passphrase: str | bytes | None = None) -> Project:
    """`mpguard init`: a project (release key, trust anchors) in `directory`. Without a
    passphrase the release key is stored unencrypted: for tests, never for releases."""
    return _project.init(directory, passphrase=_passphrase(passphrase), targets=targets)


def open_project(directory: str | Path | None = None) -> Project:
    """The project at `directory` (default: the current folder or one above it)."""
    return _project.find(directory)


def release(proj: Project, appdir: str | Path, version: str, *, out: str | Path | None = None,
            app: str | None = None, passphrase: str | bytes | None = None,
            **options: Any) -> Release:
    """`mpguard release build`: sign the app in `appdir` as a bundle (the project's next
    sequence). `out` defaults to <project>/<app>-<version>.bundle; an encrypted release key
    takes `passphrase`, else $MPGUARD_PASSPHRASE. `options`: targets, seq, expires,
    confirm_after, remove (as release build's)."""
    name = app or Path(appdir).resolve().name
    pw = _passphrase(passphrase)
    if pw is None and proj.key_entry().get("encrypted") and os.environ.get(PASSPHRASE_ENV):
        pw = os.environ[PASSPHRASE_ENV].encode()
    path = Path(out) if out is not None else proj.root / f"{name}-{version}.bundle"
    res = _release.build_release(proj, appdir, version, path, passphrase=pw, app=name, **options)
    return Release(path, path.read_bytes(), name, version, int(res["seq"]), res)


def connect(port: str, *, timeout: float = 30.0) -> BoardLink:
    """A link to the board on `port` (a serial port, or a virtual board's); use it as a
    context manager."""
    return BoardLink(port, timeout=timeout)


def install_agent(board: BoardLink, proj: Project, *, force: bool = False,
                  kind: str | None = None, deadline: float | None = 300.0) -> InstallReport:
    """`mpguard agent install`: the agent and `proj`'s trust anchors onto the board."""
    anchors = proj.board_anchors()
    return _install.install(board, anchors, kind=kind, force=force, deadline=deadline)


def uninstall_agent(board: BoardLink, *, force: bool = False) -> UninstallReport:
    """`mpguard agent uninstall`: the board as it was before the agent (a provisioned board
    only with `force`: its identity key and secrets are deleted for good)."""
    return _uninstall.uninstall(board, force=force)


def deploy(board: BoardLink, bundle: Release | bytes | str | Path, *, wait: float = 30.0,
           deadline: float | None = None) -> DeployResult:
    """`mpguard deploy`: install a bundle (a Release, its bytes or its file) and report the
    outcome from the agent's state: confirmed, refused, rolled_back, trial or unknown."""
    if isinstance(bundle, Release):
        data = bundle.data
    elif isinstance(bundle, bytes):
        data = bundle
    else:
        data = Path(bundle).read_bytes()
    return _deploy.deploy(board, data, wait=wait, deadline=deadline)


def explain(result: DeployResult) -> str:
    """A deploy's outcome in words, as the CLI prints it (headline, details, hint)."""
    head, lines, hint = _explain.explain(result)
    return "\n".join([head] + [f"  {ln}" for ln in lines] + ([f"  hint: {hint}"] if hint else []))


def status(board: BoardLink) -> BoardStatus:
    """`mpguard status`: agent, board, running app, trial, last result, anchors, /main.py."""
    return _status.read(board)


def wipe(board: BoardLink, keep: tuple[str, ...] = ()) -> list[str]:
    """Empty the board's filesystem (but `keep`) and soft-reset: a real board as freshly
    flashed, so HIL tests do not depend on each other. Returns the files removed."""
    removed = board.wipe(keep)
    board.soft_reset()
    return removed
