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


_rt = {}  # type: dict  # guard.rotate's RAM across its unloads: the apps' tests by name, "@name": stage time


def secret(name):
    # The committed value of the app's secret `name` (bytes), or None (docs/rotate.md).
    from guard import rotate

    return rotate.get(name)


def on_stage(name, fn):
    # fn(value) -> true when a staged value of secret `name` works (`mpguard rotate --test`).
    _rt[name] = fn
