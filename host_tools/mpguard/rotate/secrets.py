"""Secrets over a board link: `mpguard secret set` and `mpguard rotate NAME` (docs/rotate.md).

Before anything is sent (each refusal changes nothing, on the board or in the inventory):
 1. the name is allowed ([a-z][a-z0-9_]{0,15}, not `identity`), the value file holds 1 to
    384 bytes (its content never appears in an output, an error or a log)
 2. the board's identity is the one the inventory recorded (UEID and key): a value is
    encrypted to the *inventory's* public key, never to whatever key a board reports, so a
    swapped board gets nothing it can read (not_provisioned, key_mismatch)
 3. the board trusts the project's operator key (its anchors' "ops"; no_operator_on_board)
Then the commands (mpguard.rotate.commands), each with the board's counter + 1 and the epoch
its status gives:
  set      one command: the new value is committed at once (epoch + 1)
  rotate   stage (the old value stays the committed one); with --test the app's test
           (guard.on_stage) runs on the staged value on the board; commit when it passes or
           when there is no --test; a failed test has already reverted it on the board; a test
           that cannot run (no_test) is reverted by a command. A stage the host never
           commits reverts by itself on the board (3 boots or 10 minutes).
Each command runs on a fresh heap (a soft reset). The app's test lives in the app's RAM: for
--test the board is reset once, the app starts (one of the staged value's 3 boots) and
registers its test at its start, and the host interrupts it `settle` seconds later and runs
the test. After a commit the board is reset so the app starts with the new value (unless
restart=False).
Each outcome is appended to the board's history in the inventory: name, epochs, outcome,
never a value.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import DeviceError, DeviceRefused, RotateError
from ..identity import board as idboard
from ..link import BoardLink
from . import commands

RESERVED = ("identity",)
MAX_VALUE = 384  # guard.rotate._MAX_VALUE
SETTLE = 5.0  # s the app gets to start and register its test after a reset


@dataclass
class SecretResult:
    name: str
    outcome: str  # set | committed | reverted
    epoch: int  # the committed epoch after the command
    previous_epoch: int
    ueid: str
    tested: bool = False
    test: dict[str, Any] | None = None  # the board's {"ok", "why"} when tested
    reason: str | None = None  # why it reverted (test_failed, no_test)
    restarted: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not commands.NAME.match(name):
        raise RotateError("bad_name", repr(name)[:40])
    if name in RESERVED:
        raise RotateError("reserved_name", name)
    return name


def read_value(path: str | Path) -> bytes:
    """The value in a file: 1..MAX_VALUE bytes. Errors name the file, never its content."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise RotateError("bad_secret_file", f"{p}: not a file")
        if size > MAX_VALUE:
            raise RotateError("secret_size", f"{p}: {size} bytes")
        data = p.read_bytes()
    except OSError as e:
        raise RotateError("bad_secret_file", f"{p}: {e.strerror}") from None
    if not data:
        raise RotateError("bad_secret_file", f"{p}: empty")
    if len(data) > MAX_VALUE:
        raise RotateError("secret_size", f"{p}: {len(data)} bytes")
    return data


@dataclass
class Target:
    """A board whose identity the inventory knows: UEID (base64url) and its recorded key."""

    ueid: str
    public_key: bytes
    kid: str


def target(link: BoardLink, inv: Any) -> Target:
    """Step 2: the board's identity must be its inventory record's current one."""
    st = idboard.status(link)
    if st.get("state") != "complete" or not st.get("ueid"):
        raise RotateError("not_provisioned", f"identity state {st.get('state')}")
    dev = inv.device(idboard.unb64u(st["ueid"]))
    if dev is None:
        raise RotateError("not_provisioned", f"UEID {st['ueid']} is not in the inventory")
    if dev.certificate.revoked:  # its key is not trusted: a secret sealed to it is given away
        raise RotateError("device_revoked", f"certificate {dev.certificate.serial:x} revoked "
                          f"({dev.certificate.revoke_reason or 'no reason given'})")
    if dev.thumbprint == st.get("pending_kid"):
        raise RotateError("key_mismatch", "an identity rotation was cut short: finish it "
                          "with `mpguard rotate --port P identity`")
    if dev.thumbprint != st.get("kid"):
        raise RotateError("key_mismatch", f"the board's key is {st.get('kid')}, its record's "
                          f"{dev.thumbprint}")
    return Target(st["ueid"], bytes(dev.public_key), dev.thumbprint)


def check_operator(link: BoardLink, op_kid: str) -> None:
    """Step 3: the board's anchors list the operator key (read with mpremote's file ops)."""
    from .anchors import board_doc

    ops = (board_doc(link) or {}).get("ops") or {}
    if op_kid not in ops:
        raise RotateError("no_operator_on_board", f"operator key {op_kid}")


def status(link: BoardLink) -> dict[str, Any]:
    """The board's secrets: {"seq", "secrets": {name: {epoch, at, staged}}} (never a value)."""
    try:
        return dict(link.call("secret.status"))
    except DeviceError as e:
        raise _py_heap(link, e) or e from None


def _py_heap(link: BoardLink, e: DeviceError) -> RotateError | None:
    """RotateError agent_py_heap for a MemoryError of an agent installed as .py (compiled on
    the board: its modules' compile leaves a 64 KiB heap in pieces of a few KB); else None."""
    from ..agent import status as agentstatus

    if isinstance(e, DeviceRefused) or e.exc_type != "MemoryError":
        return None
    try:
        py = not agentstatus.compiled(link)  # the agent answered: it is there, as .py
    except DeviceError:
        return None
    return RotateError("agent_py_heap", str(e)) if py else None


def _epochs(st: dict[str, Any], name: str) -> tuple[int, int | None]:
    s = st["secrets"].get(name) or {}
    return int(s.get("epoch") or 0), s.get("staged")


ATTEMPTS = 5  # a command the board could not run for heap (MemoryError) is sent again


class _Session:
    def __init__(self, link: BoardLink, inv: Any, operator_key: Any, name: str):
        from .. import keys

        self.link, self.inv, self.key, self.name = link, inv, operator_key, name
        self.t0 = time.monotonic()
        link.soft_reset()
        try:  # nothing is sent before the command: a board out of heap here changed nothing
            self.tgt = target(link, inv)
        except DeviceError as e:
            raise _py_heap(link, e) or e from None
        check_operator(link, keys.thumbprint(operator_key))
        self.st = status(link)

    def fresh(self) -> None:
        """A fresh heap for a command: a soft reset, then guard.hw and guard.rotate loaded
        first, in that order (the decryption's peak is near a 64 KiB heap's end: what is
        loaded before the big numbers are made decides whether it fits; bench/rotate.py)."""
        self.link.soft_reset()
        self.link.call("hw.board_kind")
        self.st = status(self.link)

    def send(self, op: str, epoch: int, value: bytes | None = None) -> dict[str, Any]:
        """One signed command with the board's counter + 1, on a fresh heap. A board out of
        heap (MemoryError: refused before its one write, or after it, as its counter shows)
        gets the command again (made anew) on a fresh heap, ATTEMPTS times at most; then
        RotateError command_heap once a fresh status shows the command was not kept. An agent
        installed as .py is not tried again (its modules' compile leaves the heap in pieces:
        it does not fit the next time either): agent_py_heap once a fresh status shows the
        command was not kept (if that status cannot be read either, the MemoryError)."""
        seq = int(self.st["seq"]) + 1
        for attempt in range(ATTEMPTS + 1):
            self.fresh()
            if int(self.st["seq"]) >= seq:  # kept by the attempt before, which ran out after
                return self.st
            if attempt == ATTEMPTS:
                raise RotateError("command_heap", f"{ATTEMPTS} tries")
            # made anew for each attempt (a new ephemeral key and IV; "try" changes the
            # signature of a commit): the numbers the board works with change size, so a
            # command that ran out of heap may fit the next time
            tok = commands.command(self.key, op=op, sub=self.tgt.ueid, seq=seq, name=self.name,
                                   epoch=epoch, value=value, board_key=self.tgt.public_key,
                                   extra={"try": attempt} if attempt else None)
            try:
                self.st = dict(self.link.call("secret.command", [tok], timeout=30))
                return self.st
            except DeviceError as e:
                if isinstance(e, DeviceRefused) or e.exc_type != "MemoryError":
                    raise
                py = _py_heap(self.link, e)
                if py:
                    try:
                        self.fresh()
                    except RotateError:
                        raise e from None  # not known whether the board kept the command
                    if int(self.st["seq"]) >= seq:
                        return self.st
                    raise py from None
        raise AssertionError("unreachable")  # noqa: B011 (the loop returns or raises)

    def record(self, res: SecretResult) -> None:
        res.seconds = round(time.monotonic() - self.t0, 3)
        data = {k: v for k, v in res.as_dict().items() if k not in ("ueid", "seconds")}
        self.inv.add_event(idboard.unb64u(self.tgt.ueid), "secret", data)


def set_secret(link: BoardLink, inv: Any, operator_key: Any, name: str,
               value: bytes) -> SecretResult:
    """`mpguard secret set`: one signed `set` command; committed at once."""
    check_name(name)
    s = _Session(link, inv, operator_key, name)
    old, _ = _epochs(s.st, name)
    s.send("set", old + 1, value)
    new, _ = _epochs(s.st, name)
    res = SecretResult(name, "set", new, old, s.tgt.ueid)
    s.record(res)
    return res


def rotate_secret(link: BoardLink, inv: Any, operator_key: Any, name: str, value: bytes, *,
                  test: bool = False, restart: bool = True,
                  settle: float = SETTLE) -> SecretResult:
    """`mpguard rotate NAME`: stage, [test on the board], commit or revert."""
    check_name(name)
    s = _Session(link, inv, operator_key, name)
    old, staged = _epochs(s.st, name)
    if staged is not None:  # an earlier rotation left a stage: drop it first
        s.send("revert", staged)
    s.send("stage", old + 1, value)
    res = SecretResult(name, "committed", old, old, s.tgt.ueid, tested=test)
    if test:
        got = _test(link, name, settle)
        res.test = got
        if got is None or not got.get("ok"):
            res.outcome = "reverted"
            s.fresh()
            if got is None or s.st["secrets"].get(name, {}).get("staged") is not None:
                res.reason = "no_test" if got is None else "test_failed"
                s.send("revert", old + 1)  # no test ran: the stage is still there
            else:  # the board reverted it when the test failed
                res.reason = "test_failed"
            res.epoch = _epochs(s.st, name)[0]
            s.record(res)
            return res
    s.send("commit", old + 1)
    res.epoch = _epochs(s.st, name)[0]
    if restart:
        link.reboot()  # the app starts again, with the new value
        res.restarted = True
    s.record(res)
    return res


def _test(link: BoardLink, name: str, settle: float) -> dict[str, Any] | None:
    """The app's test on the staged value, in the app's RAM: the board is reset, the app
    starts (the staged value counts one of its boots) and registers its test, the host
    interrupts it after `settle` s and runs the test. None when the app registered none."""
    link.hard_reset(wait=settle)
    try:
        return dict(link.call("secret.test", [name], timeout=60))
    except DeviceRefused as e:
        if e.reason == "no_test":
            return None
        raise
