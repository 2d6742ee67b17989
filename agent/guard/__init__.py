# guard: the mpguard device agent (MicroPython only).
# Submodules are imported where needed so a board only loads what an operation uses.

VERSION = "0.1.0"


class GuardError(Exception):
    # args[0]: the reason, a short snake_case string (each module lists its own);
    # args[1]: an optional detail. See docs/decisions/0001-interfaces.md.
    pass


def confirm():
    # Called by the app once it is healthy: keep this update (guard.boot.confirm).
    from guard import boot

    return boot.confirm()
