"""The one tree of host-side errors. The CLI maps each to `mpguard: message` and an exit code."""


class MpguardError(Exception):
    """Base of every error mpguard raises on purpose."""

    exit_code = 1


class CommandError(MpguardError):
    """A command was used wrongly or its input is bad."""

    exit_code = 2


class MicroPythonNotFound(MpguardError):
    """The pinned MicroPython unix port is not installed."""


class DeviceError(MpguardError):
    """Code running on a board (or the unix port) raised an exception.

    `exc_type` is the device-side exception class name, `device_traceback` the
    traceback the device printed (kept for tests and --verbose, never dumped on a user).
    """

    def __init__(self, message: str, exc_type: str = "", device_traceback: str = ""):
        super().__init__(message)
        self.exc_type = exc_type
        self.device_traceback = device_traceback
