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
