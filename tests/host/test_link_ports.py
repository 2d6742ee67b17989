"""What `--port` names when it cannot be a board's serial port: the error says what the path
is (a folder, a file, a device of another kind, one the user may not open) instead of
mpremote's "failed to access" and a guess that another program holds it. Nothing is opened
to find out (opening a board's port can pulse DTR/RTS and reset an ESP32 that another program
is talking to)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard import link
from mpguard.errors import NoPortError

MPGUARD = str(Path(sys.executable).parent / "mpguard")


def status(port: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MPGUARD, "status", "--port", port], capture_output=True, text=True,
                          timeout=60)


def test_a_file_a_folder_and_a_null_device_are_named_for_what_they_are(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    for port, says in [(str(f), f"{f} is a file, not a serial port"),
                       (str(tmp_path), f"{tmp_path} is a folder, not a serial port")]:
        r = status(port)
        assert (r.returncode, r.stderr.strip()) == (3, f"mpguard: {says}"), r.stderr
    assert f.read_text() == "x"  # looked at, not written
    if not os.path.exists("/sys/dev/char"):
        pytest.skip("no sysfs here: a device's class cannot be told")
    r = status("/dev/null")
    assert r.returncode == 3 and "/dev/null is not a serial port (a mem device)" in r.stderr
    assert "another program" not in r.stderr and "Traceback" not in r.stderr


def _device_node(monkeypatch, path: str, *, gid: int) -> None:
    """`path` looks, to link's os.stat, like a character device (/dev/null's) of owner root
    and group `gid`."""
    real_stat = os.stat
    st = real_stat("/dev/null")
    monkeypatch.setattr(link.os, "stat", lambda p, *a, **k: os.stat_result(
        (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, 0, gid, st.st_size, 0, 0, 0))
        if p == path else real_stat(p, *a, **k))


def test_a_port_the_user_may_not_open_says_which_group(monkeypatch):
    # the suite runs as root here, who may open anything: the permission is taken away
    monkeypatch.setattr(link.os, "access", lambda path, mode: False)
    # /dev/null's group is root here: the node is given the gid of a group one may join (20,
    # dialout on Debian; named by number where no group has it)
    _device_node(monkeypatch, "/dev/null", gid=20)
    why = link._not_a_port("/dev/null")
    assert why is not None and why.startswith("no permission to open /dev/null (its group is ")
    assert "usermod -aG" in why


def test_a_terminal_device_gets_no_verdict_of_its_own(sim):
    # a terminal device (a board's port, here a virtual board's pseudo-terminal) may be a
    # board's port: the caller's "may be in use by another program" stands
    assert link._not_a_port(sim.port) is None


def test_on_windows_a_com_port_is_a_name_not_a_path(monkeypatch):
    # "COM3" is no path: it must not be refused as "no such port" before the transport tries
    monkeypatch.setattr(link, "_WINDOWS", True)
    with pytest.raises(NoPortError) as e:
        link.BoardLink("COM3")  # connects
    assert "no such port" not in str(e.value) and "cannot open COM3" in str(e.value)


class _Opened(Exception):
    pass


@pytest.mark.parametrize("window", ["permission", "gone"])
def test_a_port_that_comes_right_within_the_grace_is_opened_not_refused(monkeypatch, window):
    """Review (2026-11-27): a native-USB board (ESP32-S2/S3/C3) comes back as a new device
    node after its reset; udev gives the node its group (dialout) and mode a few milliseconds
    after the kernel made it root:root 0600, and the node is briefly gone while it
    re-enumerates. Before 1741529 connect tried such a port again for its 1 s grace; now the
    first failed open is final: `no permission ... (its group is root: sudo usermod -aG root
    $USER ...)` or `cannot look at ...`, for a port that opens 0.2 s later."""
    import time

    from mpremote.transport import TransportError

    master, slave = os.openpty()  # a terminal device sysfs tells nothing of (as a board's)
    port = os.ttyname(slave)
    ready = time.monotonic() + 0.2  # udev applies the rule / the node is back
    real_stat = os.stat

    def transport(*a, **k):
        if time.monotonic() < ready:
            raise TransportError(f"failed to access {port}")
        raise _Opened

    def access(path, mode):
        return time.monotonic() >= ready

    seen = []

    def stat(path, *a, **k):  # there when connect looks (os.path.exists), gone at the open
        if path == port and time.monotonic() < ready and seen:
            raise FileNotFoundError(2, "No such file or directory")
        seen.append(path)
        return real_stat(path, *a, **k)

    monkeypatch.setattr(link, "SerialTransport", transport)
    if window == "permission":
        monkeypatch.setattr(link.os, "access", access)
    else:
        monkeypatch.setattr(link.os, "stat", stat)
    try:
        with pytest.raises(_Opened):  # the open was tried again and (here) made
            link.BoardLink(port)
    finally:
        os.close(master)
        os.close(slave)


def test_a_root_only_port_does_not_advise_joining_the_root_group(monkeypatch, tmp_path):
    """Review (2026-11-27): a device node the kernel made root:root (udev has not given it its
    group yet, or no rule does, as in a container) made the advice `sudo usermod -aG root
    $USER`: a careless user who follows it can read every root-group file."""
    monkeypatch.setattr(link.os, "access", lambda path, mode: False)
    _device_node(monkeypatch, "/dev/ttyACM0", gid=0)
    why = link._not_a_port("/dev/ttyACM0")
    assert why is not None and why.startswith("no permission to open /dev/ttyACM0")
    assert "usermod -aG root" not in why, why
