"""The virtual board driven by the real `mpremote` command line (docs/sim.md)."""

from __future__ import annotations

import os
import select
import time
import tty

import pytest

import mpguard.sim as simlib

pytestmark = pytest.mark.timeout(120)


def test_exec_run_eval_and_fs_roundtrip(sim_factory, tmp_path, mpr):
    port = sim_factory().port
    assert mpr(port, "exec", "print(6 * 7)").stdout.strip() == "42"
    assert mpr(port, "eval", "[1, 'a', b'\\x00']").stdout.strip() == "[1, 'a', b'\\x00']"
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint(sys.implementation.name, sum(range(10)))\n")
    assert mpr(port, "run", str(script)).stdout.strip() == "micropython 45"

    text = tmp_path / "t.txt"
    text.write_text("héllo\nwörld\n")
    blob = tmp_path / "b.bin"
    blob.write_bytes(bytes(range(256)) * 20 + b"\x03\x04\r\n\x1e")
    mpr(port, "fs", "mkdir", ":d", "+", "fs", "cp", str(text), ":d/t.txt",
             "+", "fs", "cp", str(blob), ":d/b.bin")
    ls = mpr(port, "fs", "ls", ":d").stdout
    assert "t.txt" in ls and "b.bin" in ls and str(blob.stat().st_size) in ls
    assert mpr(port, "fs", "cat", ":d/t.txt").stdout == "héllo\nwörld\n"
    back = tmp_path / "back.bin"
    mpr(port, "fs", "cp", ":d/b.bin", str(back))
    assert back.read_bytes() == blob.read_bytes()
    mpr(port, "fs", "rm", ":d/b.bin")
    assert "b.bin" not in mpr(port, "fs", "ls", ":d").stdout
    # a device-side error is reported by mpremote as one
    bad = mpr(port, "fs", "cat", ":nope.txt", check=False)
    assert bad.returncode != 0


def test_soft_reset_then_exec_and_fresh_heap(sim_factory, mpr):
    port = sim_factory().port
    out = mpr(port, "exec", "x = 5", "+", "eval", "x", "+", "soft-reset",
                   "+", "exec", "print('x' in globals())").stdout.split()
    assert out == ["5", "False"]
    st = simlib.stats("t")
    assert st["soft_resets"] >= 2  # mpremote's own soft reset on connect, then soft-reset


def test_files_survive_resets_and_restart(sim_factory, mpr):
    port = sim_factory().port
    mpr(port, "exec", "open('/keep.txt', 'w').write('kept')")
    mpr(port, "soft-reset")
    assert mpr(port, "fs", "cat", ":keep.txt").stdout == "kept"
    mpr(port, "reset")  # machine.reset(), 100 ms after mpremote lets go
    simlib.wait_for("t", "hard_resets", 1)
    assert mpr(port, "eval", "__import__('machine').reset_cause()").stdout.strip() == "2"
    assert mpr(port, "fs", "cat", ":keep.txt").stdout == "kept"
    simlib.stop("t")
    port = sim_factory().port  # same name: same flash
    assert mpr(port, "fs", "cat", ":keep.txt").stdout == "kept"
    assert mpr(port, "eval", "__import__('machine').reset_cause()").stdout.strip() == "1"


def test_boot_and_main_run_and_stuck_main_is_interrupted(sim_factory, tmp_path, mpr):
    port = sim_factory().port
    (tmp_path / "boot.py").write_text("with open('/boots', 'a') as f:\n    f.write('b')\n")
    (tmp_path / "main.py").write_text("with open('/mains', 'a') as f:\n    f.write('m')\n"
                                        "while True:\n    pass\n")
    mpr(port, "fs", "cp", str(tmp_path / "boot.py"), ":boot.py",
             "+", "fs", "cp", str(tmp_path / "main.py"), ":main.py")
    mpr(port, "reset")  # hard reset: boot.py, then main.py, which never ends
    simlib.wait_for("t", "hard_resets", 1)
    # mpremote's Ctrl-C interrupts main.py; its soft reset in raw mode runs boot.py only.
    # boot.py ran at: `reset`'s own soft reset, the hard reset, this soft reset.
    out = mpr(port, "exec", "print(open('/boots').read(), open('/mains').read())")
    boots, mains = out.stdout.split()
    assert (boots, mains) == ("bbb", "m")
    mpr(port, "fs", "rm", ":main.py")


def test_machine_and_simhw_facts(sim_factory, mpr):
    port = sim_factory().port
    out = mpr(port, "exec", "import machine, _simhw, ubinascii\n"
                   "print(len(machine.unique_id()), machine.unique_id() == _simhw.unique_id())\n"
                   "print(machine.reset_cause() == machine.PWRON_RESET, _simhw.board()['kind'])\n"
                   "print(sorted(_simhw.flash_stats()), _simhw.net()['ap_open'])").stdout.split()
    assert out == ["6", "True", "True", "sim", "['erases',", "'reads',", "'writes']", "False"]


def test_heap_limit_and_full_flash(sim_factory, mpr):
    port = sim_factory().port
    out = mpr(port, "exec",
                   "import gc\ngc.collect()\nprint(gc.mem_free() > 40000)\n"
                   "try:\n    b = bytearray(200 * 1024)\nexcept MemoryError:\n    print('MemoryError')\n").stdout.split()
    assert out == ["True", "MemoryError"]
    out = mpr(port, "exec",
                   "import os\nb = bytes(4096)\nf = open('/fill', 'wb')\n"
                   "try:\n    while True:\n        f.write(b)\nexcept OSError as e:\n"
                   "    print(e.errno)\ntry:\n    f.close()\nexcept OSError:\n    pass\n"
                   "os.remove('/fill')\n"
                   "print(os.statvfs('/')[3] > 400)", timeout=60).stdout.split()
    assert out == ["28", "True"]  # ENOSPC, as on a board; space is back after the remove


def _read_until(fd: int, want: bytes, timeout: float = 10.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while want not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return buf


def test_repl_friendly_prompt_through_pty(sim_factory, mpremote_bin):
    port = sim_factory().port
    import subprocess

    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([mpremote_bin, "connect", port, "repl"], stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    try:
        assert b"Connected to MicroPython" in _read_until(master, b"Ctrl-x to exit")
        os.write(master, b"\r")
        assert _read_until(master, b">>> ").endswith(b">>> ")
        os.write(master, b"21 * 2\r")
        assert b"42\r\n>>> " in _read_until(master, b"42\r\n>>> ")
        os.write(master, b"for i in range(3):\rprint('n', i)\r\r")
        got = _read_until(master, b"n 2\r\n>>> ")
        assert b"n 0\r\nn 1\r\nn 2\r\n>>> " in got
        os.write(master, b"1/0\r")
        got = _read_until(master, b"ZeroDivisionError")
        assert b"Traceback (most recent call last):" in got and b'File "<stdin>", line 1' in got
        assert b"_simfw" not in got
        if b">>> " not in got[got.index(b"ZeroDivisionError"):]:  # the prompt after it, first
            got += _read_until(master, b">>> ")
        os.write(master, b"\x04")  # Ctrl-D: soft reboot from the friendly REPL
        # (read up to the banner: a ">>> " alone could still be the one before the reboot)
        got = _read_until(master, b"MicroPython v1.29")
        assert b"MPY: soft reboot" in got and b"MicroPython v1.29" in got
        if b">>> " not in got[got.index(b"MicroPython v1.29"):]:
            got += _read_until(master, b">>> ")
        assert got.endswith(b">>> "), got[-80:]
        os.write(master, b"\x1d")  # Ctrl-]: leave mpremote
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("kind", ["sim", "esp32", "esp32c3", "esp32s2", "esp32s3"])
def test_every_board_profile_boots_with_about_its_heap(sim_factory, mpr, kind):
    """The firmware fits beside every profile's heap (it once needed 74 KiB to compile, more
    than an esp32s2 sim had); code at the REPL sees about the profile's heap."""
    from mpguard import boards

    heap = boards.load_profile(kind)["heap_bytes"]
    port = sim_factory(board=kind).port
    out = mpr(port, "exec", "import gc, _simhw\ngc.collect()\nprint(_simhw.board()['kind'], gc.mem_free())")
    got_kind, free = out.stdout.split()
    assert got_kind == kind
    assert 0.9 * heap < int(free) < 1.1 * heap


def test_mount_sessions_with_files_left_open_do_not_hang(sim_factory, tmp_path, mpr):
    """`mpremote mount` leaves a RemoteFile open (`open(...).write(...)` never closes it). The
    sim closed it at the next session's soft reset, which spoke mount's protocol (0x18) to a
    host no longer listening: that session hung ("could not enter raw repl"). A board only
    finalises its VFS's own files at a soft reset; the sim now does the same."""
    port = sim_factory().port
    d = str(tmp_path)
    mpr(port, "mount", d, "exec", "open('test.txt', 'w').write('hello world\\n')")
    assert (tmp_path / "test.txt").read_text() == "hello world\n"
    out = mpr(port, "mount", d, "exec", "print(open('test.txt').readlines())").stdout
    assert out.splitlines()[-1] == "['hello world\\n']"
    out = mpr(port, "mount", d, "exec", "f = open('test.txt'); print(f.readline(), end='')").stdout
    assert out.splitlines()[-1] == "hello world"
    # the board's own files are still closed (so flushed) at a soft reset, as by gc_sweep_all
    mpr(port, "exec", "f = open('/kept.txt', 'w'); f.write('flushed')")
    assert mpr(port, "fs", "cat", ":kept.txt").stdout == "flushed"


def test_port_in_use_keeps_mpremotes_hint(sim_factory, mpr):
    """A second program opening the sim's port while one holds it: mpremote's own error and
    hint ("it may be in use by another program"), as on a board's serial port."""
    import serial

    port = sim_factory().port
    with serial.Serial(port, exclusive=True):
        r = mpr(port, "exec", "print(1)", check=False)
    assert r.returncode != 0
    assert f"failed to access {port} (it may be in use by another program)" in r.stdout + r.stderr
