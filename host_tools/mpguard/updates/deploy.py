"""`mpguard deploy`: send a signed bundle to a board, let the agent install it, reboot, and
report the board's answer: installed (and confirmed), refused with the reason, or rolled back.

Steps:
1. the agent must be on the board (`mpguard agent install`); a soft reset first gives the
   install the whole heap;
2. the bundle streams over the bulk transfer (mpguard.xfer / guard.xfer) straight into
   `guard.update.install`, which verifies the manifest before it writes anything; a refusal
   stops the transfer early;
3. when installed, the board is reset and boots the new app on trial; deploy watches what
   the board prints (without interrupting it) until the agent reports the trial confirmed or
   rolled back, or `wait` seconds pass, then reads `guard.update.status()`.
4. the manifest (the JWS the board verified) is left at /mpguard/m-<sha256[:16]>.jws: the
   board's attestation re-hashes the installed files against it, trusting it only if its
   SHA-256 is the digest the installer recorded (docs/attest.md). Manifests of releases
   that are neither confirmed nor on trial are removed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mpremote.transport import TransportError

from .. import xfer
from ..errors import BoardNotAnswering, CommandError, DeviceError
from ..link import BoardLink
from . import bundle

_MARK = "\x1eDEPLOY:"
MANIFEST_DIR = "/mpguard"
CONFIRMED = b"guard: confirmed"
ROLLED_BACK = b"guard: rolled back"

_CODE = """\
import json
from guard import xfer, update
_r = xfer.Reader({n}, {sha!r})
try:
    _res = update.install(_r, {n})
except Exception:
    _r.abort()
    raise
_r.abort()
print({mark!r} + json.dumps(_res))
"""


@dataclass
class DeployResult:
    outcome: str  # installed | confirmed | refused | rolled_back | trial
    reason: str | None = None
    detail: Any = None
    seconds: float = 0.0
    bytes: int = 0
    status: dict = field(default_factory=dict)
    console: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def send(link: BoardLink, data: bytes, progress: Callable[[int, int], None] | None = None,
         timeout: float = 30.0) -> dict:
    """Stream `data` into guard.update.install on the board; return its answer."""
    t = link.transport
    code = _CODE.format(n=len(data), sha=xfer.digest(data), mark=_MARK)
    console = bytearray()
    ser = t.serial
    old = ser.timeout
    try:
        t.exec_raw_no_follow(code)
        ser.timeout = 0.05
        xfer.stream(ser, data, progress=progress, timeout=timeout, console=console)
    except OSError as e:
        raise BoardNotAnswering(f"link to {link.port} failed during transfer: {e}") from None
    finally:
        ser.timeout = old
    # stream() stops at the last ack, so the answer and the raw REPL's EOF markers are
    # still on the port; what the board printed during the transfer comes first.
    try:
        out, err = t.follow(timeout)
    except (TransportError, OSError) as e:
        raise BoardNotAnswering(f"board on {link.port} gave no answer: {e}") from None
    out = bytes(console) + out
    text = out.decode("utf-8", "replace")
    link._record(out + err)
    if err:
        raise DeviceError("the agent failed during install", "", err.decode("utf-8", "replace"))
    for line in text.split("\n"):
        i = line.find(_MARK)
        if i >= 0:
            return dict(json.loads(line[i + len(_MARK):]))
    raise DeviceError("the agent gave no install answer", "", text)


def deploy(link: BoardLink, data: bytes, *, progress: Callable[[int, int], None] | None = None,
           wait: float = 30.0, timeout: float = 30.0) -> DeployResult:
    """Deploy `data`; `wait` bounds the trial watch, `timeout` any silence of the board."""
    t0 = time.monotonic()
    link.soft_reset()  # a fresh heap for the install (boot.py runs, main.py does not)
    try:
        link.exec("import guard.update, guard.xfer")
    except DeviceError as e:
        raise CommandError("the agent is not on the board: run `mpguard agent install` first "
                        f"({e.exc_type})") from None
    answer = send(link, data, progress, timeout)
    if answer.get("status") != "installed":
        return DeployResult("refused", answer.get("reason"), answer.get("detail"),
                            time.monotonic() - t0, len(data))
    token, _ = bundle.split(data)
    link.put(token, manifest_path(hashlib.sha256(token).hexdigest()))
    out = link.hard_reset(wait=wait, until_any=(CONFIRMED, ROLLED_BACK))
    status = link.call("guard.update.status")
    prune_manifests(link, status)
    last = (status.get("last") or {}).get("result")
    if CONFIRMED in out or (last == "confirmed" and status.get("seq") == answer.get("seq")):
        outcome = "confirmed"
    elif ROLLED_BACK in out or last == "rolled_back":
        outcome = "rolled_back"
    else:
        outcome = "trial"
    return DeployResult(outcome, None, None, time.monotonic() - t0, len(data), status,
                        out.decode("utf-8", "replace"))


def manifest_path(digest: str) -> str:
    """Where the board's attestation finds the manifest whose SHA-256 is `digest`."""
    return f"{MANIFEST_DIR}/m-{digest[:16]}.jws"


def prune_manifests(link: BoardLink, status: dict) -> None:
    """Remove manifests of releases the board neither runs confirmed nor has on trial."""
    keep = {manifest_path(d) for d in (status.get("digest"), (status.get("trial") or {}).get("digest"))
            if isinstance(d, str)}
    for name in link.listdir(MANIFEST_DIR):
        p = f"{MANIFEST_DIR}/{name}"
        if name.startswith("m-") and name.endswith(".jws") and p not in keep:
            link.remove(p)
