"""Each boot of a virtual board is a process of its own, forked by the supervisor's fork server
(forkserver.py's Zygote, launch.py --serve; decisions/0023): a fresh interpreter that keeps nothing
of the boot before (names, the qstr pool, open files, threads), and none of these processes
outlives its supervisor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import serial
from simproc import children, until

import mpguard.sim as simlib

pytestmark = pytest.mark.timeout(120)




def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _fds(pid: int) -> dict[int, str]:
    out = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out[int(fd.name)] = os.readlink(fd)
        except OSError:
            continue
    return out


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))




def _run(s: serial.Serial, line: bytes) -> bytes:
    s.write(line + b"\r")
    return until(s, b"\n>>> ")


def _soft_reset(s: serial.Serial) -> None:
    s.write(b"\x04")
    out = until(s, b"soft reboot")
    if b">>> " not in out.split(b"soft reboot", 1)[1]:
        until(s, b">>> ")


def _zygote_and_boot(sup: int) -> tuple[int, int]:
    """The supervisor's one child (the fork server) and its one child (the running boot)."""
    [zygote] = children(sup)
    assert "--serve" in _cmdline(zygote)
    end = time.monotonic() + 10
    while len(boots := children(zygote)) != 1:  # the boot before is reaped just before
        assert time.monotonic() < end, boots
        time.sleep(0.01)
    return zygote, boots[0]


def test_each_boot_is_a_fresh_interpreter_forked_by_the_fork_server(sim_factory):
    info = sim_factory("f")
    assert info.pid
    zygote, first = _zygote_and_boot(info.pid)
    zygote_fds = _fds(zygote)
    assert sorted(zygote_fds)[:3] == [0, 1, 2] and len(zygote_fds) == 4  # and its socket
    with serial.Serial(info.port, timeout=0.02) as s:
        s.write(b"\r\x03")
        until(s, b">>> ")
        _soft_reset(s)
        zygote2, before = _zygote_and_boot(info.pid)
        qstrs = _run(s, b"import micropython; micropython.qstr_info()")
        _run(s, b"zmark = 5; exec(';'.join('zq%d=1' % i for i in range(50)))")
        assert b"n_qstr=" in _run(s, b"micropython.qstr_info()")
        before_fds = _fds(before)
        _soft_reset(s)
        zygote3, after = _zygote_and_boot(info.pid)
        # the same first line, the same pool: nothing interned by the boot before is left
        assert _run(s, b"import micropython; micropython.qstr_info()") == qstrs
        assert b"NameError" in _run(s, b"print(zmark)")
    assert zygote == zygote2 == zygote3  # one fork server for the sim's life
    assert len({first, before, after}) == 3
    # the boot has its pipes as 0-4 (the firmware's own files above), none of the boot before
    after_fds = _fds(after)
    assert [after_fds[fd].startswith("pipe:") for fd in range(5)] == [True] * 5
    pipes = {after_fds[fd] for fd in range(5)}
    assert all(v in pipes or v.startswith(info.state_dir) for v in after_fds.values()), after_fds
    assert list(after_fds.values()).count(after_fds[0]) == 1, after_fds  # no copy left open
    assert not {v for v in before_fds.values() if v.startswith("pipe:")} & set(after_fds.values())
    assert _fds(zygote) == zygote_fds  # nothing of a boot stays in the fork server
    assert _threads(zygote) == 1 and _threads(after) == 2  # the interpreter and its Ctrl-C thread


def _gone(pids: list[int], timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = []
        for pid in pids:
            try:
                alive += [pid] if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z" else []
            except (FileNotFoundError, IndexError):
                pass
        if not alive:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("how", ["stop", "SIGKILL"])
def test_no_fork_server_or_boot_outlives_its_supervisor(sim_factory, how):
    info = sim_factory("o")
    assert info.pid
    zygote, boot = _zygote_and_boot(info.pid)
    if how == "stop":
        simlib.stop("o")
    else:
        os.kill(info.pid, signal.SIGKILL)
    assert _gone([info.pid, zygote, boot])
    assert not simlib.get("o").running


def test_a_killed_fork_server_leaves_boots_to_new_launcher_processes(sim_factory):
    info = sim_factory("k")
    assert info.pid
    zygote, boot = _zygote_and_boot(info.pid)
    with serial.Serial(info.port, timeout=0.02) as s:
        s.write(b"\r\x03")
        until(s, b">>> ")
        os.kill(zygote, signal.SIGKILL)  # the boot dies with it; the board reboots
        until(s, b"firmware stopped (exit -9); rebooting")
        until(s, b">>> ")
        assert _gone([zygote, boot])
        [launcher] = children(info.pid)
        assert _cmdline(launcher)[1].endswith("launch.py") and "--serve" not in _cmdline(launcher)
        # the board works, Ctrl-C included, and its soft reset boots another launcher
        s.write(b"while True: pass\r")
        time.sleep(0.3)
        s.write(b"\x03")
        assert b"KeyboardInterrupt" in until(s, b">>> ")
        _soft_reset(s)
        assert b"42" in _run(s, b"print(6 * 7)")
        [launcher2] = children(info.pid)
        assert launcher2 != launcher and "--serve" not in _cmdline(launcher2)
