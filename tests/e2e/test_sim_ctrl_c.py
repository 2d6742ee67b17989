"""A Ctrl-C from the host while the board runs code is a KeyboardInterrupt at the next point
where the interpreter checks, as on an ESP32 (the board's UART interrupt marks it pending):
never a jump out of the interpreter's own C code. The unix port's SIGINT handler made that
jump, and one that landed while the board interned a new name left the qstr lock taken: the
next import waited forever (the suite's "soft reset printed OK and then nothing")."""

from __future__ import annotations

import time

import serial
from simproc import until


def test_ctrl_c_while_the_board_interns_names_leaves_it_working(sim_factory):
    info = sim_factory("c")
    with serial.Serial(info.port, timeout=0.02) as s:
        s.write(b"\r\x03")
        until(s, b">>> ", 10)
        s.write(b"o = type('O', (), {})()\r")
        until(s, b">>> ", 10)
        s.write(b"for i in range(64): setattr(o, 'n' + str(i), i)\r\r")
        until(s, b">>> ", 10)
        for r in range(40):
            # a name made at run time is looked up in the qstr pool, under its lock, each time
            s.write(b"exec(\"i=0\\nwhile True:\\n getattr(o, 'n' + str(i & 63))\\n i += 1\")\r")
            time.sleep(0.02 + (r % 7) * 0.013)
            s.write(b"\x03")
            out = until(s, b">>> ", 10)
            assert b"KeyboardInterrupt" in out, (r, out[-300:])
            s.write(b"import gc; print('alive', %d, o.n7)\r" % r)
            out = until(s, b">>> ", 10)
            assert b"alive %d 7" % r in out, (r, out[-300:])


def test_ctrl_c_pending_when_a_stdin_read_begins_ends_the_read(sim_factory):
    """A Ctrl-C that comes while the board runs C code (`sum` checks nothing) stays pending;
    a read of stdin begun after it still ends with KeyboardInterrupt, as a board's stdin read
    checks pending events. The unix port checks only when a wait ends with EINTR, and
    readinto() reads on until its buffer is full: the sim wakes the interpreter again after a
    Ctrl-C (one wake-up between two reads was lost, and a broken-off transfer's board stayed
    in its read; tests/e2e/test_deploy.py's link-lost restart failed on it at times)."""
    info = sim_factory("k")
    with serial.Serial(info.port, timeout=0.02) as s:
        s.write(b"\r\x03")
        until(s, b">>> ", 10)
        for r in range(3):
            # `sum` runs 1-3 s here: longer than a fixed set of wake-ups would last
            s.write(b"import sys; b = bytearray(64); print('go'); x = sum(range(50000000)); "
                    b"sys.stdin.buffer.readinto(b)\r")
            until(s, b"go\r\n", 10)
            s.write(b"\x03")
            out = until(s, b">>> ", 20)
            assert b"KeyboardInterrupt" in out, (r, out[-300:])
            s.write(b"print('alive', %d)\r" % r)
            out = until(s, b">>> ", 10)
            assert b"alive %d" % r in out, (r, out[-300:])


def test_the_launcher_finds_the_interpreters_pending_word():
    """The wake-ups above last while the interrupt is pending: the launcher must find the
    interpreter's pending-exception word (else it falls back to a fixed set of wake-ups)."""
    import subprocess
    import sys
    from pathlib import Path

    import mpguard.sim

    launch = Path(mpguard.sim.__file__).parent / "launch.py"
    code = (f"import sys; sys.path.insert(0, {str(launch.parent)!r}); import ctypes, launch\n"
            "lib = launch.library(); slot = launch.pending_slot(lib)\n"
            "w = lambda: ctypes.c_void_p.from_address(slot).value\n"
            "before = w(); lib.mp_sched_keyboard_interrupt(); after = w()\n"
            "print(slot is not None, before is None, after is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr
