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


def test_a_port_the_user_may_not_open_says_which_group(monkeypatch):
    # the suite runs as root here, who may open anything: the permission is taken away
    monkeypatch.setattr(link.os, "access", lambda path, mode: False)
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
