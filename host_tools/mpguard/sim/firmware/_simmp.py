# `micropython` on the virtual board: the built-in module, with kbd_intr() also telling the
# sim's supervisor whether a Ctrl-C byte should interrupt (SIGINT) or pass through as data.
from micropython import *  # noqa: F403
import micropython as _mp
import _simhw


def kbd_intr(c):
    _simhw._kbd(c)
    if c == 3:
        _mp.kbd_intr(3)
    # c == -1: the unix port would make SIGINT fatal; the supervisor simply stops sending it.
