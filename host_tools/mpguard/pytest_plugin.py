"""HIL pytest plugin: one test suite, on a virtual board or a real one.

Registered under the `pytest11` entry point as `mpguard`, so installing mpguard is enough.

Options (each is also a fixture of the same name, which a test module may override):
  --board sim | PORT      `sim` (default) starts a fresh virtual board; a port such as
                          /dev/ttyUSB0 uses a real board        -> fixture `board_target`
  --board-scope SCOPE     `function` (default) or `module`: one board per test or per module
                                                                -> fixture `board_scope`
  --board-kind KIND       board profile of the virtual board (boards/KIND.json), default sim
                                                                -> fixture `board_kind`
  --board-baud B          emulate a UART of B baud on the virtual board (default: unthrottled)
                                                                -> fixture `board_baud`
  --board-latency MS      delay every byte each way by MS ms, as a USB-serial bridge does
                          (default: none)                       -> fixture `board_latency`

Fixtures:
  board            a connected `mpguard.link.BoardLink` (a board reset meanwhile, e.g. a power
                   cut, is `BoardReset` at once; the next use reconnects)
  board_port       the board's port, for a `mpguard`/`mpremote` subprocess inside
                   `with board.detached():` (the link holds the port otherwise)
  sim              sim-only controls (`SimControl`: power cuts, flash counters, restart); a
                   test that needs them is skipped on a real board, with the reason printed
  clean_board      `board` with its filesystem emptied first (`mpguard.api.wipe`): a real
                   board's factory reset, so tests do not depend on each other
  mpguard_project  a project in the test's tmp folder (release key unencrypted: tests only)
                   whose releases target the board's kind
  mpguard_release  `make(source, version, **options) -> api.Release`: sign an app (a folder, or
                   {path: source} written to a folder) with `mpguard_project`
  agent_board      `clean_board` with the agent and `mpguard_project`'s anchors installed

Marker `sim_only`: the test needs the virtual board (skipped on a real one, reason printed).
On failure, the report gets a section with what the board printed.

Virtual boards of a test session never join the user's sims: each board fixture's sim lives
in that fixture's tmp folder and is removed at teardown; a sim a test starts by itself
(mpguard.sim, `mpguard sim`) lives in a temp folder of the session, removed at its end.
The agent is compiled once per session: the session's compiled modules are kept in a temp
folder ($MPGUARD_MPY_CACHE, mpguard.agent.package), removed at its end.

(Just over 300 lines: the options, the board's life cycle and SimControl in one place; the
project, release and agent fixtures are mpguard.pytest_fixtures.)
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .link import BoardLink
from .pytest_fixtures import (  # noqa: F401  (fixtures of this plugin)
    agent_board,
    board_port,
    clean_board,
    mpguard_project,
    mpguard_release,
)

_CONSOLE_KEY = pytest.StashKey[list]()
_SIM_ONLY = "needs the virtual board's controls; running on a real board ({})"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("mpguard", "mpguard hardware-in-the-loop")
    g.addoption("--board", dest="board_target", default="sim",
                help="'sim' for a virtual board (default) or a serial port of a real board")
    g.addoption("--board-scope", dest="board_scope", default="function",
                choices=["function", "module"], help="one board per test (default) or per module")
    g.addoption("--board-kind", dest="board_kind", default="sim",
                help="board profile for the virtual board (default: sim)")
    g.addoption("--board-baud", dest="board_baud", type=int, default=None,
                help="emulated UART baud rate of the virtual board (default: unthrottled)")
    g.addoption("--board-latency", dest="board_latency", type=float, default=None,
                help="latency of the virtual board's port each way, in ms (default: none)")


_SIMS_KEY = pytest.StashKey[tuple[pytest.MonkeyPatch, Path]]()
_MPY_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_only: needs the virtual board (skipped on a real "
                            "board, with the reason)")
    # The session's sims folder: named now, created by the first sim that starts in it.
    root = Path(tempfile.gettempdir()) / f"mpguard-sims-{uuid.uuid4().hex[:12]}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MPGUARD_SIM_DIR", str(root))
    config.stash[_SIMS_KEY] = (mp, root)
    from .agent import package

    if not os.environ.get(package.CACHE_ENV):  # pytest-xdist's workers share the controller's
        mpy = Path(tempfile.mkdtemp(prefix="mpguard-mpy-"))
        mp.setenv(package.CACHE_ENV, str(mpy))
        config.stash[_MPY_KEY] = mpy


def pytest_unconfigure(config: pytest.Config) -> None:
    got = config.stash.get(_SIMS_KEY, None)
    if got is None:
        return
    mp, root = got
    _remove_sims(root)
    mp.undo()
    mpy = config.stash.get(_MPY_KEY, None)
    if mpy is not None:
        shutil.rmtree(mpy, ignore_errors=True)


def _remove_sims(root: Path) -> None:
    """Stop and remove every sim under `root`, then `root` itself."""
    if not root.is_dir():
        return
    from . import sim
    old = os.environ.get("MPGUARD_SIM_DIR")
    os.environ["MPGUARD_SIM_DIR"] = str(root)
    try:
        for s in sim.list_sims():
            try:
                sim.rm(s.name, force=True)
            except sim.SimError:
                pass  # gone already; the folder goes below anyway
    finally:
        if old is None:
            del os.environ["MPGUARD_SIM_DIR"]
        else:
            os.environ["MPGUARD_SIM_DIR"] = old
    shutil.rmtree(root, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    target = str(item.config.getoption("board_target"))
    if item.get_closest_marker("sim_only") and not _is_sim(target):
        pytest.skip(_SIM_ONLY.format(target))


def pytest_report_header(config: pytest.Config) -> str:
    return f"mpguard board: {config.getoption('board_target')}"


@pytest.fixture(scope="session")
def board_target(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("board_target"))


@pytest.fixture(scope="session")
def board_kind(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("board_kind"))


@pytest.fixture(scope="session")
def board_baud(pytestconfig: pytest.Config) -> int | None:
    return pytestconfig.getoption("board_baud")


@pytest.fixture(scope="session")
def board_latency(pytestconfig: pytest.Config) -> float | None:
    return pytestconfig.getoption("board_latency")


@pytest.fixture(scope="session")
def board_scope(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("board_scope"))


def _is_sim(target: str) -> bool:
    return target == "sim"


@dataclass
class SimControl:
    """Controls only a virtual board has. `info` is the sim's `SimInfo`; `link` the `board`
    fixture's link to it, which `restart` points at the restarted sim's port."""

    info: Any
    link: BoardLink | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.info.name)

    @property
    def port(self) -> str:
        return str(self.info.port)

    def stats(self) -> dict:
        from . import sim
        return dict(sim.stats(self.name))

    def arm_power_cut(self, after: int | None = None, seed: int | None = None,
                      torn: bool = False) -> None:
        from . import sim
        sim.arm_power_cut(self.name, after=after, seed=seed, torn=torn)

    def disarm_power_cut(self) -> None:
        """No cut armed any more (the `sim` fixture does this at the end of every test)."""
        from . import sim
        sim.disarm_power_cut(self.name)

    def io(self) -> Any:
        """What the app did to its peripherals (`mpguard.sim.IOLog`: pin(n), toggles(n), ...)."""
        from . import sim
        return sim.io(self.name)

    @property
    def pins(self) -> dict[str, list[int]]:
        """Levels written to each pin: sim.pins["2"] -> [1, 0, 1, ...]."""
        return dict(self.io().pins)

    def set_input(self, kind: str, id: Any, value: Any) -> None:
        """An input the app reads: ("pin", 0, 1), ("adc", 34, 1234), ("i2c", 0x76, bytes),
        ("spi", 1, bytes), ("rtc", 0, (y, m, d, wd, h, mi, s, us)); see docs/sim.md."""
        from . import sim
        sim.set_input(self.name, kind, id, value)

    def set_adc(self, pin: int, raw: int) -> None:
        self.set_input("adc", pin, raw)

    def set_pin(self, pin: int, level: int) -> None:
        self.set_input("pin", pin, level)

    def restart(self) -> None:
        """Stop and start the sim again with the same flash (a power cycle). The restarted
        sim has a new port: the `board` link lets go of the old one (which another sim may get
        next) and connects to the new one at its next operation."""
        from . import sim
        if self.link is not None:
            self.link.close()
        sim.stop(self.name)
        self.info = sim.start(name=self.name, board=self.info.board, baud=self.info.baud,
                              latency=self.info.latency_ms)
        if self.link is not None:
            self.link.port = self.port
            self.link.mark_stale()


_seq = itertools.count(1)


def _sim_name(node_name: str) -> str:
    """A unique, valid sim name (1-32 chars) that still hints at the test."""
    hint = re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).removeprefix("test_")[:14].strip("-.")
    return f"hil{os.getpid() % 100000}-{next(_seq)}-{hint or 'board'}"


class _BoardProvider:
    """Creates the board for a scope and tears it down. A virtual board lives in `tmp`
    (MPGUARD_SIM_DIR points there while the board lives, so a test's own mpguard.sim calls
    find it) and is stopped and removed at teardown."""

    def __init__(self, request: pytest.FixtureRequest, tmp: Path):
        self.request = request
        self.tmp = tmp
        self.target = request.getfixturevalue("board_target")
        self.sim: SimControl | None = None
        self.link: BoardLink | None = None
        self.env = pytest.MonkeyPatch()

    def start(self) -> None:
        if _is_sim(self.target):
            from . import sim
            self.env.setenv("MPGUARD_SIM_DIR", str(self.tmp / "sims"))
            info = sim.start(
                name=_sim_name(self.request.node.name),
                board=self.request.getfixturevalue("board_kind"),
                baud=self.request.getfixturevalue("board_baud"),
                latency=self.request.getfixturevalue("board_latency"),
            )
            self.sim = SimControl(info)
            port = self.sim.port
        else:
            port = self.target
        self.link = BoardLink(port, timeout=30.0)
        if self.sim is not None:
            self.sim.link = self.link

    def stop(self) -> None:
        try:
            if self.link is not None:
                self.link.close()
        finally:
            if _is_sim(self.target):
                _remove_sims(self.tmp / "sims")
            self.env.undo()


def _provider_scope(fixture_name: str, config: pytest.Config) -> str:
    return str(config.getoption("board_scope"))


@pytest.fixture(scope=_provider_scope)  # type: ignore[arg-type]
def _mpguard_board(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[_BoardProvider]:
    prov = _BoardProvider(request, tmp_path_factory.mktemp("board"))
    try:
        prov.start()
        yield prov
    finally:
        prov.stop()


@pytest.fixture
def board(_mpguard_board: _BoardProvider, request: pytest.FixtureRequest) -> Iterator[BoardLink]:
    link = _mpguard_board.link
    assert link is not None
    request.node.stash[_CONSOLE_KEY] = [link, link.printed]
    yield link
    link.deadline = None  # a test's own bound ends with it


@pytest.fixture
def sim(request: pytest.FixtureRequest, board_target: str) -> Iterator[SimControl]:
    """The virtual board's controls. A power cut the test armed and that has not fired is
    disarmed at its end (pass or fail), so it never hits the next test on a shared board."""
    if not _is_sim(board_target):
        pytest.skip(_SIM_ONLY.format(board_target))
    prov: _BoardProvider = request.getfixturevalue("_mpguard_board")
    assert prov.sim is not None
    yield prov.sim
    from .errors import SimError

    try:
        prov.sim.disarm_power_cut()
    except (SimError, OSError):  # a sim gone already has no cut to disarm
        pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    rep = yield
    if rep.failed and call.when in ("call", "setup"):
        entry = item.stash.get(_CONSOLE_KEY, None)
        if entry:
            link, start = entry
            text = link.console_since(start).decode("utf-8", "replace")
            rep.sections.append(("what the board printed", text or "(nothing)"))
    return rep


__all__ = ["SimControl", "agent_board", "board", "board_baud", "board_kind", "board_latency",
           "board_port", "board_scope", "board_target", "clean_board", "mpguard_project",
           "mpguard_release", "sim"]
