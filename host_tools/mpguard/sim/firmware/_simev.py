# _simev: the virtual board's side channels, one table for both ends. The firmware
# (MicroPython: `import _simev`) writes events; the supervisor (CPython) loads this same file
# as a plain module (mpguard/sim/events.py). tests/e2e/test_sim_events.py checks that the
# firmware sends exactly these events and the supervisor handles exactly these.
#
# Events, firmware -> supervisor: one line each on a pipe, the letter, then decimal numbers
# (ARGS names them): "W 12\n".
UP = "U"  # the board answers (mounted; boot.py runs next)
BUSY = "B"  # user code runs: a Ctrl-C byte from the terminal becomes SIGINT
IDLE = "I"  # user code ended; `reads` = flash block reads since this boot
KBD_OFF = "K0"  # micropython.kbd_intr(-1): Ctrl-C passes through as data
KBD_ON = "K1"  # micropython.kbd_intr(3)
WRITE = "W"  # one flash block write
ERASE = "E"  # one flash block erase
ARMED = "A"  # cut record `seq` taken: cut at block write number `at` of the sim's life
CUT = "X"  # power cut during this block write; `bytes` of it reached the flash
RESET = "R"  # machine.reset(): the interpreter is killed next (hard reset)
FORMAT = "F"  # the flash had no filesystem and was formatted
WDT = "D"  # machine.WDT created or fed: the board resets unless fed again within `ms`

ARGS = {
    UP: (),
    BUSY: (),
    IDLE: ("reads",),
    KBD_OFF: (),
    KBD_ON: (),
    WRITE: ("block",),
    ERASE: ("block",),
    ARMED: ("seq", "at", "permille"),
    CUT: ("block", "offset", "bytes"),
    RESET: (),
    FORMAT: (),
    WDT: ("ms",),
}

# The cut record, host -> firmware: the file NAME/cut holds one record of CUT_LEN bytes,
# "SEQ N PERMILLE" padded with spaces, ending in "\n", rewritten in place. The firmware
# rereads it before every block write; a new SEQ is taken at the first write that sees it:
# the power goes at the N-th block write from there (N = 0: disarmed), and PERMILLE/1000 of
# that write reaches the flash. The firmware reports the write number it chose (ARMED), so
# a board that resets before the cut keeps the same one (the supervisor passes it on).
CUT_LEN = 32


def line(e, *a):
    # One event as it travels on the pipe.
    return e + "".join(" %d" % x for x in a) + "\n"
