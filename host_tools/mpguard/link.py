"""The host's link to a board: one API whether the port is a virtual board or a /dev/ttyUSB*.

Built on mpremote's `SerialTransport` (raw REPL, raw-paste). It connects, calls the agent
(`call`, and `stream` for bulk data), puts and gets files, resets, and waits for the board to
come back, with timeouts and typed errors:

- `NoPortError`        the port does not exist or cannot be opened;
- `BoardNotAnswering`  the port opened but no REPL appeared in time;
- `DeviceError`        code on the board raised (device traceback kept on the exception);
- `DeviceRefused`      the agent refused with `GuardError(reason, detail)`;
- `BoardReset`         the board reset while the host waited (a power cut, a watchdog, a
                       crash): raised at once, not after a timeout; the next use reconnects;
- `LinkDeadline`       an operation did not end before its deadline.

Every wait ends (mpguard.watch): each operation has an overall deadline (its timeout, plus
time for its bytes), and `deadline` (set with `set_deadline`) bounds them all; a board that
keeps printing no longer keeps the host waiting.

The host sends the agent names and JSON arguments, never code (docs/decisions/0010-board-rpc.md):
`call(name, args)` and `stream(name, args, data)` send the one line of `_CALL` (a call of
guard.rpc on the board), and the agent answers with one framed line, `_MARK` + JSON
`{"ok": value}` or `{"err": [reason, detail]}`. Besides that line, the host runs only
mpremote's own operations (files, hashing, eval) and `machine.reset()` for `hard_reset`.
`exec` runs code a test gives it (the HIL plugin).

The board's output outside raw-REPL answers (boot messages, what `main.py` printed) is kept
in `BoardLink.console` so tests and reports can show what the board printed.

(Over 300 lines: one class, every way the host reaches a board, kept in one place on purpose;
its file operations are mpguard.linkfiles, its resets mpguard.linkresets, the port's watch
mpguard.watch.)
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport
from serial import SerialException

from . import xfer
from .errors import (
    BoardNotAnswering,
    BoardReset,
    DeviceError,
    DeviceRefused,
    LinkDeadline,
    NoAgent,
    NoPortError,
)
from .linkfiles import MIN_RATE, FileOps
from .linkresets import ResetOps
from .unixport import parse_traceback
from .watch import Watch, settle

# The one line the host sends to call the agent: guard.rpc's run(name, args) or
# stream(name, args, length, sha), every parameter a Python literal (names and JSON text).
_CALL = "import guard.rpc\nguard.rpc.{entry}({params})"
_RESET = "import machine\nmachine.reset()"  # works on a board without the agent
_MARK = "\x1eMPG:"  # must equal agent/guard/rpc.py _MARK: the answer's line starts with it
_NAME = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\Z")
CONSOLE_LIMIT = 64 * 1024  # bytes of board output kept for reports
_READ_TIMEOUT = 2.0  # s: longest single blocking read on the port
# redirect_stdout swaps the process's sys.stdout: links of several threads (a production line)
# take turns, or one restores another's StringIO for good and the process's output is lost
_STDOUT = threading.Lock()
_ATTEMPT = 3.0  # s: one try at entering the raw REPL
_BUSY_GRACE = 1.0  # seconds a busy port is tried again before NoPortError (see connect)
_BUSY = " (it may be in use by another program: mpremote, a terminal, or a test's `board` fixture)"
_URL_PORT = ("socket://", "rfc2217://")
# what _not_a_port says of a port that may come right by itself within the grace: udev gives
# a new device node (a native-USB board back from its reset) its group a few ms after the
# kernel made it, and the node is briefly gone while the board re-enumerates
_NO_PERMISSION = "no permission to open "
_CANNOT_LOOK = "cannot look at "
_PASSING = (_NO_PERMISSION, _CANNOT_LOOK)
_WINDOWS = os.name == "nt"  # COM3 and \\.\COM10 are names, not paths to look at


def _not_a_port(port: str) -> str | None:
    """Why `port`, a path that exists, cannot be a serial port mpguard may open, or None when
    it may be one (then it is most likely busy): mpremote says only "failed to access".
    Opens nothing: opening a board's port can pulse DTR/RTS, which resets an ESP32 that
    another program is talking to. A character device is told a terminal or not by its
    class in sysfs (Linux; elsewhere, and for pseudo-terminals, it is not told)."""
    import stat

    try:
        st = os.stat(port)
    except OSError as e:
        return f"{_CANNOT_LOOK}{port}: {e.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return f"{port} is a folder, not a serial port"
    if not stat.S_ISCHR(st.st_mode):
        return f"{port} is a file, not a serial port"
    if not os.access(port, os.R_OK | os.W_OK):
        if st.st_gid == 0:  # never advise joining root's group
            return (f"{_NO_PERMISSION}{port} (it is root's only: a udev rule usually "
                    "gives a serial port a group such as dialout or uucp)")
        try:
            import grp

            group = grp.getgrgid(st.st_gid).gr_name
        except (ImportError, KeyError):
            group = str(st.st_gid)
        return (f"{_NO_PERMISSION}{port} (its group is {group}: on Linux, "
                f"`sudo usermod -aG {group} $USER`, then log in again)")
    cls = f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/subsystem"
    if os.path.exists(cls) and os.path.basename(os.path.realpath(cls)) != "tty":
        return f"{port} is not a serial port (a {os.path.basename(os.path.realpath(cls))} device)"
    return None


class BoardLink(FileOps, ResetOps):
    """A connected board. Use as a context manager, or call `close()`.

    File operations (`put`, `get`, `listdir`, `exists`, `sha256`, `remove`, `mkdir`,
    `rmtree`, `wipe`) come from mpguard.linkfiles, resets (`soft_reset`, `hard_reset`,
    `reboot`, `wait_boot`) from mpguard.linkresets."""

    def __init__(
        self,
        port: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        soft_reset: bool = False,
    ):
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.console = b""
        self.printed = 0  # bytes ever added to `console` (a mark for `console_since`)
        self.deadline: float | None = None  # time.monotonic() bounding every operation
        self._t: SerialTransport | None = None
        self._stale = False  # the board reset under us: reconnect before the next operation
        # the last `stream`: payload bytes, bytes on the wire, compressed or not, seconds
        self.last_transfer: dict[str, Any] = {}
        self.connect(soft_reset=soft_reset)

    # -- connection -------------------------------------------------------------------------

    def _record(self, data: bytes) -> None:
        self.console = (self.console + data)[-CONSOLE_LIMIT:]
        self.printed += len(data)

    def console_since(self, mark: int) -> bytes:
        """What the board printed since `mark` (an earlier value of `printed`)."""
        n = self.printed - mark
        return self.console[-n:] if n > 0 else b""

    def set_deadline(self, seconds: float | None) -> None:
        """Bound every later operation to end within `seconds` from now (None: no bound)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def connect(self, soft_reset: bool = False) -> None:
        """Open the port and enter the raw REPL (interrupting whatever runs)."""
        by_path = not self.port.startswith(_URL_PORT) and not _WINDOWS
        if by_path and not os.path.exists(self.port):
            raise NoPortError(f"no such port: {self.port}")
        busy_until = time.monotonic() + _BUSY_GRACE
        while True:
            try:
                self._t = SerialTransport(self.port, baudrate=115200)
                break
            except TransportError as e:
                # mpremote gives up with "failed to access PORT" when the port exists but
                # cannot be opened (exclusively): most often another program holds it. For a
                # moment it can be this program: a process another thread forks holds a copy
                # of every open file, and with it the port's lock, until it execs; the lock of
                # a link closed just before is then busy for a few milliseconds.
                why = _not_a_port(self.port) if by_path else None
                late = time.monotonic() >= busy_until
                if why is not None and (late or not why.startswith(_PASSING)):
                    raise NoPortError(why) from None
                if late:
                    raise NoPortError(f"cannot open {self.port}: {e}{_BUSY}") from None
                time.sleep(0.05)
        self._t.serial = Watch(self._t.serial)
        self._stale = False
        # mpremote opens the port with no read timeout and, on a pty, blocks in read(1): a
        # board that swallowed our Ctrl-A (e.g. code reading stdin raced the Ctrl-C) would
        # hang us forever. A read timeout lets each attempt end; the next attempt sends
        # Ctrl-C + Ctrl-A again.
        try:
            self._t.serial.timeout = _READ_TIMEOUT
        except OSError as e:  # pyserial reconfigures the port: a board pulled out just now
            self.close()
            raise BoardNotAnswering(f"board on {self.port} went away while connecting ({e})") from None
        deadline = time.monotonic() + self.connect_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._enter_raw(soft_reset, max(0.5, min(_ATTEMPT, deadline - time.monotonic())))
                return
            except (TransportError, OSError) as e:
                last = e
                time.sleep(0.1)
        self.close()
        raise BoardNotAnswering(f"board on {self.port} did not answer ({last})")

    def _enter_raw(self, soft_reset: bool, timeout: float) -> None:
        t = self._t
        assert t is not None  # internal invariant, not a security check
        # Keep what the board printed before we took over (boot messages, main.py output).
        n = t.serial.in_waiting
        if n:
            self._record(t.serial.read(n))
        noise = io.StringIO()  # mpremote prints what it got when it fails: keep it, quietly
        # A board that resets while we connect (a machine.reset() or power cut just before)
        # may have lost our Ctrl-C and Ctrl-A with the boot that ended: its reset line ends
        # this attempt at once and the next sends them again, instead of waiting the attempt
        # out. Not with `soft_reset`: mpremote's own Ctrl-D prints one.
        t.serial.arm(time.monotonic() + timeout, "connecting", resets=not soft_reset)
        try:
            with _STDOUT, contextlib.redirect_stdout(noise):
                t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=timeout)
        except LinkDeadline as e:  # a board that kept printing: the next attempt sends Ctrl-C again
            raise TransportError(str(e)) from None
        except BoardReset as e:
            self._record(e.output)
            raise TransportError(str(e)) from None
        finally:
            t.serial.disarm()
            if noise.getvalue():
                self._record(noise.getvalue().encode())
        got = settle(t.serial)  # a late second banner, left on the port, broke the next command
        if got:
            self._record(got)

    def close(self) -> None:
        if self._t is not None:
            try:
                if self._t.in_raw_repl:
                    self._t.exit_raw_repl()
                self._t.close()
            except (OSError, TransportError):
                pass
            self._t = None

    def __enter__(self) -> BoardLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_stale(self) -> None:
        """Connect again (interrupting whatever runs on the board) before the next operation:
        after the board was reset or restarted, or an operation was stopped part way."""
        self._stale = True

    def reconnect(self) -> None:
        """Close the port and connect again (interrupting whatever runs on the board)."""
        self.close()
        self.connect()

    @contextlib.contextmanager
    def detached(self) -> Iterator[str]:
        """Let go of the port for a while (for `mpguard` or `mpremote` as a subprocess, which
        cannot open a port the link holds), then connect again::

            with board.detached() as port:
                subprocess.run(["mpguard", "deploy", "--port", port, "app.bundle"])
        """
        self.close()
        try:
            yield self.port
        finally:
            self.connect()

    @property
    def transport(self) -> SerialTransport:
        if self._stale:  # the board reset during the last operation: start clean
            self.reconnect()
        if self._t is None:
            raise BoardNotAnswering(f"not connected to {self.port}")
        return self._t

    @contextlib.contextmanager
    def _op(self, what: str, seconds: float) -> Iterator[SerialTransport]:
        """One operation: the port's watch armed with the operation's deadline (the nearer of
        `seconds` from now and the link's `deadline`). A reset or a missed deadline leaves the
        link to reconnect before its next operation."""
        t = self.transport
        end = time.monotonic() + seconds
        if self.deadline is not None:
            end = min(end, self.deadline)
        w = t.serial
        w.arm(end, what)
        try:
            yield t
        except BoardReset as e:
            self._stale = True
            self._record(e.output)
            raise
        except LinkDeadline:
            self._stale = True
            raise
        except (TransportError, BoardNotAnswering):
            self._stale = True  # the board is in a state the raw REPL did not expect
            raise
        except SerialException as e:
            # the port itself failed (a board unplugged, a sim stopped): pyserial's error is
            # an OSError, which mpremote's file operations also raise for a board's own errno
            self._stale = True
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
        except struct.error as e:
            # mpremote unpacks the raw-paste window size from what the board sent: an answer
            # cut short (noise on the line, a board still busy with bytes from before) is the
            # link's failure, not an internal error (mpguard.watch's read gives whole reads)
            self._stale = True
            raise TransportError(f"the board's answer was garbled ({e})") from None
        except (TransportExecError, OSError, DeviceError, DeviceRefused):
            raise  # the board answered (an exception or a refusal on the board, a file's
            # errno): in step, and a MemoryError's retry is the caller's (on the same heap)
        except BaseException:
            # anything else that stops an operation part way (pytest-timeout, Ctrl-C, a bug)
            # may leave the board running it or an answer on the port: connect again (which
            # interrupts the board) before the next operation
            self._stale = True
            raise
        finally:
            w.disarm()

    # -- running a test's code (HIL) ----------------------------------------------------------

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        data_consumer: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run a test's code in the raw REPL; return what it printed (device exception ->
        DeviceError). `timeout`: the longest the code may run (default: the link's timeout).
        A board reset meanwhile is BoardReset at once. mpguard itself calls the agent with
        `call` and `stream` instead."""
        return self._exec(code, timeout or self.timeout, data_consumer, "the code it ran")

    def _exec(self, code: str | bytes, tmo: float,
              data_consumer: Callable[[bytes], None] | None, what: str) -> str:
        got = bytearray()  # what the code printed so far, kept when it does not end in time

        def take(b: bytes) -> None:
            got.extend(b)
            if data_consumer:
                data_consumer(b)

        try:
            try:
                with self._op(what, tmo) as t:
                    _, err = t.exec_raw(code, timeout=tmo, data_consumer=take)
            except (BoardReset, TransportExecError):
                raise  # a reset's output _op recorded (the watch saw it all)
            except BaseException:
                self._record(bytes(got))  # a LinkDeadline's, or a test stopped meanwhile
                raise
        except TransportExecError as e:  # pragma: no cover - exec_raw does not raise it
            err = e.error_output.encode()
        except (TransportError, OSError) as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
        out = bytes(got[:-1]) if got.endswith(b"\x04") else bytes(got)  # the EOF marker
        self._record(out + err)
        if err:
            raise self._device_error(err.decode("utf-8", "replace"))
        return out.decode("utf-8", "replace")

    @staticmethod
    def _device_error(text: str) -> DeviceError:
        exc_type, msg = parse_traceback(text)
        return DeviceError(
            f"board raised {exc_type}: {msg}" if exc_type else "board raised an exception",
            exc_type=exc_type,
            device_traceback=text,
        )

    def eval(self, expr: str) -> Any:
        """Evaluate an expression on the board and return its value, which must be a Python
        literal (mpremote's eval: the repr the board prints, read with ast.literal_eval);
        a value that is not one (`object()`, a set) is DeviceError (`exc_type` empty)."""
        try:
            with self._op("an eval", self.timeout) as t:
                text = t.exec(f"print(repr({expr}))").strip().decode("utf-8", "replace")
        except TransportExecError as e:
            raise self._device_error(e.error_output) from None
        except (TransportError, OSError) as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
        try:
            return ast.literal_eval(text)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise DeviceError(f"eval of {expr!r}: the value is not a Python literal ({shown})",
                              device_traceback=text) from None

    # -- calling the agent ------------------------------------------------------------------

    @staticmethod
    def _line(entry: str, name: str, args: Sequence[Any], *extra: Any) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"not an agent call name: {name!r}")
        params = (name, json.dumps(list(args))) + extra
        return _CALL.format(entry=entry, params=", ".join(repr(p) for p in params))

    @staticmethod
    def _answer(name: str, out: str) -> Any:
        """The value of the framed answer in `out`, or DeviceRefused for a refusal."""
        for line in out.split("\n"):  # not splitlines(): it splits at the \x1e mark too
            i = line.find(_MARK)  # what the board printed may precede it on the line
            if i < 0:
                continue
            ans = json.loads(line[i + len(_MARK):].rstrip("\r"))
            if "ok" in ans:
                return ans["ok"]
            reason, detail = ans["err"]
            raise DeviceRefused(str(reason), detail)
        raise DeviceError(f"{name}: the agent gave no answer", device_traceback=out)

    def call(self, name: str, args: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        """Call agent function `name` ("update.status") with JSON `args`; return its value.

        A refusal (GuardError on the board) is DeviceRefused(reason, detail); any other
        exception on the board is DeviceError with the device traceback.
        """
        try:
            out = self._exec(self._line("run", name, args), timeout or self.timeout, None,
                             f"the agent's {name}")
        except DeviceError as e:
            raise self._no_agent(e) from None
        return self._answer(name, out)

    def _no_agent(self, e: DeviceError) -> DeviceError:
        """NoAgent for a board where an agent module is missing (no module named 'guard...':
        no agent, a half-installed one, or one older than the call), else `e`."""
        text = e.device_traceback.strip().splitlines()
        last = text[-1] if text else ""
        if e.exc_type in ("ImportError", "ModuleNotFoundError") and "'guard" in last:
            return NoAgent(f"the agent on {self.port} is missing or incomplete ({last})",
                           e.exc_type, e.device_traceback)
        return e

    def stream(self, name: str, args: Sequence[Any], data: bytes,
               progress: Callable[[int, int], None] | None = None, *,
               timeout: float | None = None, compress: bool = False, ahead: bool = False) -> Any:
        """Call streaming agent function `name` ("update.install") and send it `data` over the
        bulk transfer (mpguard.xfer); return its value, as `call` does.

        `compress`: the board's agent inflates compressed transfers (its `info.facts` says
        "deflate"); the payload then travels compressed when that makes it smaller. `ahead`:
        the agent reads ahead (its facts say "ahead"; docs/decisions/0018), so a latency-bound
        link carries a block per round trip instead of two frames. What was
        sent is in `last_transfer`. `timeout` bounds any silence of the board: no ack during
        the transfer, no answer after it. What the board printed meanwhile is appended to
        `console`.
        """
        wire = (xfer.compress(data) or data) if compress else data
        # rpc.stream's z: the board's Reader takes len(wire) bytes, the function gets
        # len(data) (0: not compressed); then a: read ahead
        z = len(wire) if wire is not data else 0
        extra = [z, 1] if ahead else [z] if z else []
        line = self._line("stream", name, args, len(data), xfer.digest(wire), *extra)
        if z and progress:  # in payload bytes, as without compression
            shown = progress
            progress = lambda n, _t: shown(n * len(data) // len(wire), len(data))  # noqa: E731
        self.last_transfer = {"bytes": len(data), "wire_bytes": len(wire),
                              "compressed": wire is not data, "ahead": ahead, "seconds": None}
        tmo = timeout or self.timeout
        printed = bytearray()
        t0 = time.monotonic()
        with self._op("the transfer", tmo + len(wire) / MIN_RATE) as t:
            ser = t.serial
            old = ser.timeout
            try:
                t.exec_raw_no_follow(line)
                ser.timeout = 0.05
                xfer.stream(ser, wire, progress=progress, timeout=tmo, console=printed)
            except (TransportError, OSError) as e:
                self._record(bytes(printed))
                raise BoardNotAnswering(f"link to {self.port} failed during transfer: {e}") from None
            finally:  # a BoardReset carries what the board printed (the watch saw it all)
                with contextlib.suppress(OSError):  # a port that went away takes no setting
                    ser.timeout = old
            self.last_transfer["seconds"] = round(time.monotonic() - t0, 3)
            # xfer.stream stops at the last ack: the answer and the raw REPL's EOF markers are
            # still on the port, after what the board printed during the transfer.
            try:
                out, err = t.follow(tmo)
            except (TransportError, OSError) as e:
                self._record(bytes(printed))
                raise BoardNotAnswering(f"board on {self.port} gave no answer: {e}") from None
        out = bytes(printed) + out
        self._record(out + err)
        if err:
            raise self._device_error(err.decode("utf-8", "replace"))
        return self._answer(name, out.decode("utf-8", "replace"))

    def _send_reset(self) -> None:
        try:
            self.transport.exec_raw_no_follow(_RESET)
        except (TransportError, OSError):
            pass  # the board may go away before answering
