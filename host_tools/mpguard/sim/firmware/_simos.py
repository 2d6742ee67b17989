# `os` on the virtual board: the unix port's os less what an ESP32 lacks (system, getenv,
# putenv, unsetenv, VfsPosix), plus uname() as the esp32 port has it.
from os import *  # noqa: F403  (the built-in module, imported before this one replaces it)
import _simhw

del system, getenv, putenv, unsetenv, VfsPosix  # noqa: F821


def uname():
    import sys
    from collections import namedtuple

    v = sys.implementation.version
    rel = "%d.%d.%d" % v[:3]
    b = _simhw.board()
    r = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    return r("esp32", "esp32", rel, "v%s on %s" % (rel, sys.version.split(" on ")[-1]),
             "%s with %s" % (b.get("name") or "mpguard virtual board " + b.get("kind", "sim"),
                             b.get("chip", "esp32").upper()))
