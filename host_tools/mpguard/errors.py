"""The one tree of host-side errors. The CLI maps each to `mpguard: message` and an exit code.

Exit codes and the messages of refusal reasons live in mpguard.reasons (a leaf module).
"""

from __future__ import annotations

from . import reasons as _r


class MpguardError(Exception):
    """Base of every error mpguard raises on purpose. `hint` (what to do) is shown after the
    message when set; else the hint of the error's `reason` (mpguard.reasons), if any."""

    exit_code = _r.EXIT_ERROR
    hint = ""


class CommandError(MpguardError):
    """A command was used wrongly or its input is bad."""

    exit_code = _r.EXIT_USAGE


class RootFsRefused(CommandError):
    """`agent install` refused a board whose root filesystem ("/") is `fs` (FAT: a rename over
    an existing file there is an unlink and a rename, so a power cut between them loses the
    agent's state). Raised before anything is written; `--force` does not override it
    (docs/decisions/0030-fat-root-refused.md)."""

    def __init__(self, message: str, fs: str, hint: str = ""):
        super().__init__(message)
        self.fs = fs
        self.hint = hint


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
        if exc_type == "MemoryError":  # not a bug of mpguard's: say what helps
            self.hint = _r.MEMORY_HINT


class NoAgent(DeviceError):
    """The board has no agent, or not a whole one: the import of guard.rpc, or of an agent
    module it needs, failed on the board (exit 2, as `deploy` refuses such a board)."""

    exit_code = _r.EXIT_USAGE

    def __init__(self, message: str, exc_type: str = "", device_traceback: str = ""):
        super().__init__(message, exc_type, device_traceback)
        self.hint = "run `mpguard agent install` (it writes what is missing)"


class BoardProfileError(MpguardError):
    """A board profile is unknown, malformed, or drifted from the installed esptool."""

    exit_code = _r.EXIT_USAGE


class EfuseError(MpguardError):
    """An eFuse file or field spec is missing, malformed or does not fit the board profile."""

    exit_code = _r.EXIT_USAGE


class LinkError(MpguardError):
    """Base of board-link failures."""

    exit_code = _r.EXIT_LINK


class NoPortError(LinkError):
    """The serial port does not exist or cannot be opened."""


class BoardNotAnswering(LinkError):
    """The port opened but the board did not give a REPL in time."""


class LinkDeadline(BoardNotAnswering):
    """An operation on the board did not end before its deadline (a board that keeps
    printing never lets a silence timeout fire; a deadline always ends the wait)."""

    reason = "deadline"


class BoardReset(LinkError):
    """The board reset (its boot banner or MicroPython's soft-reboot line came) while the
    host waited for an answer: a power cut, a watchdog, a crash. `output` is what the board
    printed from a little before the reset on. The link reconnects on its next use."""

    reason = "board_reset"

    def __init__(self, message: str, output: bytes = b""):
        super().__init__(message)
        self.output = output


class DeviceRefused(DeviceError):
    """The agent refused an operation with a `GuardError(reason, detail)`."""

    exit_code = _r.EXIT_REFUSED

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail), exc_type="GuardError")
        self.reason = reason
        self.detail = detail


class BundleError(MpguardError):
    """An update bundle cannot be built or read; `reason` is the board's reason name."""

    exit_code = _r.EXIT_USAGE

    def __init__(self, reason: str, detail: str | None = None):
        msg = _r.message(reason)
        super().__init__(f"{msg}: {detail}" if detail else msg)
        self.reason = reason
        self.detail = detail


class ProjectError(MpguardError):
    """No mpguard project here, or its files (config, keys, anchors, sequences) are bad."""

    exit_code = _r.EXIT_USAGE


class KeyStoreError(MpguardError):
    """A key file cannot be written or read (missing, wrong format, exists already)."""

    exit_code = _r.EXIT_USAGE


class PassphraseError(KeyStoreError):
    """The passphrase is missing, empty, or does not decrypt the key (never echoed)."""


class JoseError(MpguardError):
    """A JWS was refused; `reason` is the same snake_case reason the board uses."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or _r.message(reason))
        self.reason = reason


class SimError(MpguardError):
    """A virtual board cannot be started, found or controlled."""

    exit_code = _r.EXIT_USAGE


class IdentityError(MpguardError):
    """A board's identity, or a request for one, was refused; `reason` names why
    (mpguard.reasons). Raised before the board, the CA or the inventory changed."""

    exit_code = _r.EXIT_REFUSED

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail


class CAError(IdentityError):
    """The project's device CA is missing, exists already, or was asked for bad input."""

    exit_code = _r.EXIT_USAGE


class InventoryError(MpguardError):
    """The inventory refused a record or a request; `reason` names why (mpguard.reasons).

    Raised before anything is written, or with the transaction rolled back: nothing changed.
    """

    exit_code = _r.EXIT_USAGE

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail
        if reason in _REFUSALS:  # a valid request the inventory's state refuses
            self.exit_code = _r.EXIT_REFUSED


_REFUSALS = ("already_revoked", "crl_would_drop")


class DuplicateIdentity(InventoryError):
    """The UEID or the public key already belongs to a board: a second one is a clone."""

    exit_code = _r.EXIT_REFUSED


class InventoryUnavailable(InventoryError):
    """The inventory is locked past its timeout, or its database cannot be reached."""

    exit_code = _r.EXIT_INVENTORY


class AttestError(MpguardError):
    """An attestation was refused (the token is not trustworthy evidence) or could not run;
    `reason` names the refusal (mpguard.reasons), e.g. unknown_device, bad_sig, old_nonce."""

    exit_code = _r.EXIT_REFUSED

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail
        if reason in ("bad_policy", "no_inventory", "no_attestations"):
            self.exit_code = _r.EXIT_USAGE  # bad input, not a refused token


class FuseError(MpguardError):
    """An eFuse status or hardening step was refused or failed; `reason` names it
    (mpguard.reasons). Raised before anything is burned, except `burn_mismatch`, which says
    what espefuse reports after a burn that did not give what the plan said."""

    exit_code = _r.EXIT_USAGE
    _EXIT = {"espefuse_failed": _r.EXIT_LINK, "pin_conflict": _r.EXIT_REFUSED,
             "pin_board_mismatch": _r.EXIT_REFUSED,
             "fuse_unsupported": _r.EXIT_REFUSED, "burn_mismatch": _r.EXIT_ERROR}

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail
        self.exit_code = self._EXIT.get(reason, _r.EXIT_USAGE)


class LineError(MpguardError):
    """A production-line station cannot run, or a board failed a step; `reason` names it
    (mpguard.reasons): bad_station before anything is touched, the others per board."""

    exit_code = _r.EXIT_USAGE
    _EXIT = {"disconnected": _r.EXIT_LINK, "step_failed": _r.EXIT_FAIL,
             "attest_failed": _r.EXIT_FAIL, "deploy_failed": _r.EXIT_FAIL,
             "not_available": _r.EXIT_ERROR}

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail
        self.exit_code = self._EXIT.get(reason, _r.EXIT_USAGE)


class RotateError(MpguardError):
    """A credential rotation was refused (by the host's checks, before anything was sent, or
    by the board, which then changed nothing); `reason` names it (mpguard.reasons). Bad input
    (a name, a file, a key, a project without an operator key) is a usage error."""

    exit_code = _r.EXIT_REFUSED
    _USAGE = ("bad_name", "reserved_name", "bad_secret_file", "bad_anchor_key", "no_operator",
              "secret_size", "no_keys", "threshold", "bad_threshold")

    def __init__(self, reason: str, detail: object = None):
        super().__init__(_r.message(reason, detail))
        self.reason = reason
        self.detail = detail
        if reason in self._USAGE:
            self.exit_code = _r.EXIT_USAGE


class BrokerError(MpguardError):
    """The demo's MQTT broker (mpguard.mqtt) could not be started, or a check of it was
    given what an MQTT CONNECT cannot carry."""
