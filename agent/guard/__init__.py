# guard: the mpguard device agent (MicroPython only).
# Submodules are imported where needed so a board only loads what an operation uses.

VERSION = "0.1.0"


class GuardError(Exception):
    # args[0] is a small numeric code (see guard.errors), args[1] an optional detail.
    pass


def confirm():
    # Called by the app once it is healthy: keep this update (guard.update.confirm).
    from guard import update

    return update.confirm()
