"""unixport.run through the fork server (decisions/0026): each run is a fork of one process
that loaded the unix port's library, and does what a new `micropython` process does: the
same outputs, errors, heap limit, sys.path, folder, stdin, and nothing else open.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from mpguard import unixport
from mpguard.errors import DeviceError

# What the run is and sees: its parent, its open fds, its folder, its sys.path, stdin's size.
PROBE = """
import os, sys
with open("/proc/self/stat") as f:
    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
fds = sorted(int(n) for n, *_ in os.ilistdir("/proc/self/fd"))
OUT({"ppid": ppid, "fds": fds, "cwd": os.getcwd(), "path": sys.path[:2],
     "getenv": os.getenv("MPGUARD_PROBE")})
print("plain text")
sys.stderr.write("to stderr\\n")
"""


@pytest.fixture(params=["forked", "process"])
def mode(request, monkeypatch):
    monkeypatch.setenv("MPGUARD_UNIXPORT_FORK", "1" if request.param == "forked" else "0")
    return request.param


def test_a_run_is_a_fork_of_the_server_with_only_its_own_fds(tmp_path, monkeypatch):
    monkeypatch.delenv("MPGUARD_UNIXPORT_FORK", raising=False)
    monkeypatch.setenv("MPGUARD_PROBE", "seen")
    (tmp_path / "lib").mkdir()
    res = unixport.run(PROBE, path=[tmp_path / "lib"], cwd=tmp_path)
    server = unixport._SERVER
    assert server is not None and server.ok
    got = res.out
    assert got["ppid"] == server.proc.pid  # forked by the server, not a new process of ours
    # stdin, stdout, stderr, and the fd the listing itself opened: nothing of the server's
    assert got["fds"][:3] == [0, 1, 2] and len(got["fds"]) == 4, got["fds"]
    assert got["cwd"] == str(tmp_path) and str(tmp_path / "lib") in got["path"]
    assert got["getenv"] == "seen"  # the caller's environment at the call, not the server's
    assert res.stdout.strip() == "plain text" and res.stderr == "to stderr\n"


def test_forked_and_process_runs_agree(mode, tmp_path):
    (tmp_path / "mymod.py").write_text("X = 41\n")
    res = unixport.run("import mymod\nOUT(mymod.X + IN)", 1, path=[tmp_path])
    assert res.out == 42 and res.returncode == 0
    # stdin as bytes, larger than a pipe holds
    big = bytes(range(256)) * 1024
    res = unixport.run("import sys\nb = sys.stdin.buffer.read()\nOUT([len(b), b[-1]])",
                       stdin=big, heapsize="1M")
    assert res.out == [len(big), 255]
    # output larger than a pipe holds, on both streams
    res = unixport.run("import sys\nsys.stderr.write('e' * 100000)\nprint('o' * 100000)",
                       heapsize="1M")
    assert len(res.stdout) == 100001 and len(res.stderr) == 100000
    # the device's error and its traceback
    with pytest.raises(DeviceError) as e:
        unixport.run("def f():\n    raise ValueError('boom')\nf()")
    assert e.value.exc_type == "ValueError" and "<device code>" in e.value.device_traceback
    # the heap limit is the run's own
    with pytest.raises(DeviceError) as e:
        unixport.run("b = bytearray(40000)", heapsize="32K")
    assert e.value.exc_type == "MemoryError"
    assert unixport.run("b = bytearray(40000)\nOUT(len(b))", heapsize="64K").out == 40000


def test_a_run_past_its_timeout_is_killed_and_the_next_run_works(mode):
    with pytest.raises(subprocess.TimeoutExpired):
        unixport.run("while True:\n    pass", timeout=1)
    assert unixport.run("OUT(7)").out == 7


def test_a_server_that_died_is_replaced_by_processes(monkeypatch):
    monkeypatch.delenv("MPGUARD_UNIXPORT_FORK", raising=False)
    assert unixport.run("OUT(1)").out == 1
    server = unixport._SERVER
    assert server is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    try:
        # the run that finds it gone, and every later one, is a process of its own
        assert unixport.run("OUT(2)").out == 2
        assert unixport._NO_SERVER and not server.ok
        assert unixport.run("OUT(3)").out == 3
    finally:
        unixport._NO_SERVER = False  # later tests in this process get a new server
        unixport._SERVER = None
