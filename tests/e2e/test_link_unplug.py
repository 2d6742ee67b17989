"""A board pulled out while the link opens its port (the race a production line met: the port
opened, then pyserial's reconfiguration failed with an I/O error): the link raises its own
typed error (a LinkError, which the line reports as `disconnected`), not pyserial's."""

from __future__ import annotations

import pytest

import mpguard.link as linkmod
import mpguard.sim as simlib
from mpguard.errors import LinkError

pytestmark = pytest.mark.timeout(120)


def test_board_pulled_out_while_the_port_is_configured(sim_factory, monkeypatch):
    info = sim_factory("u")
    real = linkmod.Watch

    class PulledOut(real):  # the timing is injected; the failure is the real port's
        def __setattr__(self, name, value):
            if name == "timeout":
                simlib.stop("u")
            super().__setattr__(name, value)

    monkeypatch.setattr(linkmod, "Watch", PulledOut)
    with pytest.raises(LinkError) as e:
        linkmod.BoardLink(info.port, connect_timeout=5)
    assert "went away" in str(e.value), e.value


def _proj(tmp_path):
    from mpguard import project

    return project.init(tmp_path / "proj", passphrase=None, targets=["sim"])


def test_board_gone_while_the_agent_installs_is_a_link_error(sim_factory, tmp_path):
    # pyserial's "readiness to read but returned no data" is an OSError, which mpremote's file
    # operations also raise for a board's own errno: it was reported as the board's error on
    # the file being written (exit 1); it is the link's (exit 3: run the command again)
    from mpguard.agent import install as agent_install

    info = sim_factory("ai", baud=115200)
    proj = _proj(tmp_path)
    seen = []

    def progress(path):
        seen.append(path)
        if len(seen) == 3:
            simlib.stop("ai")  # the board goes away between two files

    with linkmod.BoardLink(info.port) as link, pytest.raises(LinkError) as e:
        agent_install.install(link, proj.board_anchors(), progress=progress)
    assert e.value.exit_code == 3 and "stopped answering" in str(e.value), e.value


def test_board_gone_during_a_deploy_transfer_is_a_link_error(sim_factory, tmp_path):
    # the transfer's port setting, put back after the stream failed, raised pyserial's error
    # from a `finally` (a traceback, exit 1) instead of the link's
    from mpguard.agent import install as agent_install
    from mpguard.updates import deploy, release

    info = sim_factory("dp")  # the agent goes on at full speed (at 115200 baud: 5 s)
    proj = _proj(tmp_path)
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import guard\nguard.confirm()\n")
    (app / "blob.py").write_bytes(b"#" + bytes(range(33, 127)) * 200)  # ~19 KB to send
    out = tmp_path / "a.bundle"
    release.build_release(proj, app, "1.0.0", out, passphrase=None, app="demo")
    with linkmod.BoardLink(info.port) as link:
        agent_install.install(link, proj.board_anchors())
    # the same board (its flash kept) at 115200 baud: the bundle takes ~1.7 s to send
    simlib.stop("dp")
    info = simlib.start("dp", baud=115200)
    with linkmod.BoardLink(info.port) as link:
        sent = []

        def progress(n, total):
            sent.append(n)
            if n > 2048:
                simlib.stop("dp")

        with pytest.raises(LinkError) as e:
            deploy.deploy(link, out.read_bytes(), progress=progress, wait=5)
    assert e.value.exit_code == 3 and sent, e.value


def test_agent_install_keeps_a_nearer_deadline_of_its_caller(sim_factory, tmp_path):
    # install(deadline=300) replaced a HIL test's tighter set_deadline (a review's suspicion,
    # confirmed): the nearer of the two holds, as deploy's does, and the caller's comes back
    import time

    from mpguard.agent import install as agent_install
    from mpguard.errors import LinkDeadline

    info = sim_factory("dl", baud=115200)
    proj = _proj(tmp_path)
    with linkmod.BoardLink(info.port) as link:
        link.set_deadline(1.0)
        mine = link.deadline
        t0 = time.monotonic()
        with pytest.raises(LinkDeadline):
            agent_install.install(link, proj.board_anchors(), deadline=300)
        assert time.monotonic() - t0 < 10 and link.deadline == mine
