"""The host's link to a board: one API whether the port is a virtual board or a /dev/ttyUSB*.

Built on mpremote's `SerialTransport` (raw REPL, raw-paste). It connects, calls the agent
(`call`, and `stream` for bulk data), puts and gets files, resets, and waits for the board to
come back, with timeouts and typed errors:

- `NoPortError`        the port does not exist or cannot be opened;
- `BoardNotAnswering`  the port opened but no REPL appeared in time;
- `DeviceError`        code on the board raised (device traceback kept on the exception);
- `DeviceRefused`      the agent refused with `GuardError(reason, detail)`.

The host sends the agent names and JSON arguments, never code (docs/decisions/0010-board-rpc.md):
`call(name, args)` and `stream(name, args, data)` send the one line of `_CALL` (a call of
guard.rpc on the board), and the agent answers with one framed line, `_MARK` + JSON
`{"ok": value}` or `{"err": [reason, detail]}`. Besides that line, the host runs only
mpremote's own operations (files, hashing, eval) and `machine.reset()` for `hard_reset`.
`exec` runs code a test gives it (the HIL plugin).

The board's output outside raw-REPL answers (boot messages, what `main.py` printed) is kept
in `BoardLink.console` so tests and reports can show what the board printed.

(Over 300 lines: one class, every way the host reaches a board, kept in one place on purpose.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from . import xfer
from .errors import BoardNotAnswering, DeviceError, DeviceRefused, NoPortError
from .unixport import parse_traceback

# The one line the host sends to call the agent: guard.rpc's run(name, args) or
# stream(name, args, length, sha), every parameter a Python literal (names and JSON text).
_CALL = "import guard.rpc\nguard.rpc.{entry}({params})"
_MARK = "\x1eMPG:"  # must equal agent/guard/rpc.py _MARK: the answer's line starts with it
_NAME = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\Z")
CONSOLE_LIMIT = 64 * 1024  # bytes of board output kept for reports
_READ_TIMEOUT = 2.0  # s: longest single blocking read on the port
_ATTEMPT = 3.0  # s: one try at entering the raw REPL

class BoardLink:
    """A connected board. Use as a context manager, or call `close()`."""

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
        self._t: SerialTransport | None = None
        self.connect(soft_reset=soft_reset)

    # -- connection -------------------------------------------------------------------------

    def _record(self, data: bytes) -> None:
        self.console = (self.console + data)[-CONSOLE_LIMIT:]

    def connect(self, soft_reset: bool = False) -> None:
        """Open the port and enter the raw REPL (interrupting whatever runs)."""
        if not os.path.exists(self.port) and not self.port.startswith(("socket://", "rfc2217://")):
            raise NoPortError(f"no such port: {self.port}")
        try:
            self._t = SerialTransport(self.port, baudrate=115200)
        except TransportError as e:
            raise NoPortError(f"cannot open {self.port}: {e}") from None
        # mpremote opens the port with no read timeout and, on a pty, blocks in read(1): a
        # board that swallowed our Ctrl-A (e.g. code reading stdin raced the Ctrl-C) would
        # hang us forever. A read timeout lets each attempt end; the next attempt sends
        # Ctrl-C + Ctrl-A again.
        self._t.serial.timeout = _READ_TIMEOUT
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
        try:
            with contextlib.redirect_stdout(noise):
                t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=timeout)
        finally:
            if noise.getvalue():
                self._record(noise.getvalue().encode())

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

    @property
    def transport(self) -> SerialTransport:
        if self._t is None:
            raise BoardNotAnswering(f"not connected to {self.port}")
        return self._t

    # -- running a test's code (HIL) ----------------------------------------------------------

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        data_consumer: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run a test's code in the raw REPL; return what it printed (device exception ->
        DeviceError). mpguard itself calls the agent with `call` and `stream` instead."""
        t = self.transport
        try:
            out, err = t.exec_raw(code, timeout=timeout or self.timeout, data_consumer=data_consumer)
        except TransportExecError as e:  # pragma: no cover - exec_raw does not raise it
            out, err = b"", e.error_output.encode()
        except (TransportError, OSError) as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
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
        """Evaluate a Python-literal expression on the board (mpremote's own eval)."""
        try:
            return self.transport.eval(expr)
        except TransportExecError as e:
            raise self._device_error(e.error_output) from None
        except (TransportError, OSError) as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None

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
        return self._answer(name, self.exec(self._line("run", name, args), timeout))

    def stream(self, name: str, args: Sequence[Any], data: bytes,
               progress: Callable[[int, int], None] | None = None, *,
               timeout: float | None = None) -> Any:
        """Call streaming agent function `name` ("update.install") and send it `data` over the
        bulk transfer (mpguard.xfer); return its value, as `call` does.

        `timeout` bounds any silence of the board: no ack during the transfer, no answer
        after it. What the board printed meanwhile is appended to `console`.
        """
        line = self._line("stream", name, args, len(data), xfer.digest(data))
        tmo = timeout or self.timeout
        t = self.transport
        ser = t.serial
        old = ser.timeout
        printed = bytearray()
        try:
            t.exec_raw_no_follow(line)
            ser.timeout = 0.05
            xfer.stream(ser, data, progress=progress, timeout=tmo, console=printed)
        except (TransportError, OSError) as e:
            self._record(bytes(printed))
            raise BoardNotAnswering(f"link to {self.port} failed during transfer: {e}") from None
        finally:
            ser.timeout = old
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

    # -- files ------------------------------------------------------------------------------

    def put(self, data: bytes, remote: str, progress: Callable[[int, int], None] | None = None) -> None:
        self._fs(lambda t: t.fs_writefile(remote, data, progress_callback=progress), remote)

    def get(self, remote: str) -> bytes:
        return bytes(self._fs(lambda t: t.fs_readfile(remote), remote))

    def listdir(self, path: str = "/") -> list[str]:
        return [e.name for e in self._fs(lambda t: t.fs_listdir(path), path)]

    def exists(self, path: str) -> bool:
        return bool(self._fs(lambda t: t.fs_exists(path), path))

    def sha256(self, path: str) -> str | None:
        """SHA-256 (hex) of a file on the board, hashed there (mpremote's own fs_hashfile);
        None when there is no such file. Needs no agent."""
        if not self.exists(path):
            return None
        return bytes(self._fs(lambda t: t.fs_hashfile(path, "sha256"), path)).hex()

    def remove(self, path: str) -> None:
        self._fs(lambda t: t.fs_rmfile(path), path)

    def mkdir(self, path: str, exist_ok: bool = True) -> None:
        """Create `path` and its parents."""
        parts = [p for p in path.split("/") if p]
        cur = ""
        for p in parts:
            cur += "/" + p
            if not self.exists(cur):
                self._fs(lambda t, c=cur: t.fs_mkdir(c), cur)
            elif not exist_ok and cur == "/" + "/".join(parts):
                raise FileExistsError(cur)

    def _fs(self, op: Callable[[SerialTransport], Any], path: str) -> Any:
        try:
            return op(self.transport)
        except TransportExecError as e:
            exc_type, msg = parse_traceback(e.error_output)
            raise DeviceError(f"{path}: {exc_type}: {msg}", exc_type, e.error_output) from None
        except TransportError as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
        except OSError as e:  # mpremote turns a device OSError into a local one
            err = DeviceError(f"{path}: {e.strerror or e}", "OSError", str(e))
            err.errno = e.errno  # type: ignore[attr-defined]
            raise err from None

    # -- resets -----------------------------------------------------------------------------

    def soft_reset(self) -> None:
        """Ctrl-D in the raw REPL: boot.py runs again, then we are back in the raw REPL."""
        t = self.transport
        try:
            t.serial.write(b"\x04")
            data = t.read_until(1, b"raw REPL; CTRL-B to exit\r\n", timeout_overall=self.connect_timeout)
        except (TransportError, OSError) as e:
            raise BoardNotAnswering(f"board on {self.port} did not come back: {e}") from None
        self._record(data)
        if not data.endswith(b"raw REPL; CTRL-B to exit\r\n"):
            raise BoardNotAnswering(f"board on {self.port} did not come back after soft reset")

    def hard_reset(self, wait: float = 0.0, until: bytes | None = None,
                   until_any: tuple[bytes, ...] = ()) -> bytes:
        """`machine.reset()`: the board reboots and runs boot.py and main.py.

        Collects what the board prints for `wait` seconds (or until `until` appears), then
        reconnects into the raw REPL (interrupting main.py) and returns the collected output.
        """
        t = self.transport
        try:
            t.exec_raw_no_follow("import machine\nmachine.reset()")
        except (TransportError, OSError):
            pass  # the board may go away before answering
        return self.wait_boot(wait, until, until_any)

    def wait_boot(self, wait: float = 0.0, until: bytes | None = None,
                  until_any: tuple[bytes, ...] = ()) -> bytes:
        """Read the board's output for `wait` s or until `until` (or any of `until_any`)
        appears, then reconnect."""
        marks = until_any + ((until,) if until is not None else ())
        t = self.transport
        t.in_raw_repl = False
        seen = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                n = t.serial.in_waiting
                chunk = t.serial.read(n or 1) if n else b""
            except OSError:
                chunk = b""
            if chunk:
                seen += chunk
                if any(m in seen for m in marks):
                    break
            else:
                time.sleep(0.01)
        self._record(seen)
        self.close()
        self.connect(soft_reset=False)
        return seen
