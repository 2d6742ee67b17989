"""`mpguard deploy`: send a signed bundle to a board, let the agent install it, reboot, and
report the board's answer: installed (and confirmed), refused with the reason, or rolled back.

Steps:
1. the agent must be on the board (`mpguard agent install`); a soft reset first gives the
   install the whole heap;
2. the bundle streams over the bulk transfer (`BoardLink.stream`: mpguard.xfer / guard.xfer)
   straight into the agent's `update.install` (guard.install), which verifies the manifest
   before it writes anything; a refusal stops the transfer early;
3. when installed, the board is reset and boots the new app on trial; deploy watches what
   the board prints (without interrupting it) until the agent reports the trial confirmed or
   rolled back, or `wait` seconds pass, then calls `update.status`.
4. the manifest (the JWS the board verified) is left at /mpguard/m-<sha256[:16]>.jws: the
   board's attestation re-hashes the installed files against it, trusting it only if its
   SHA-256 is the digest the installer recorded (docs/attest.md). Manifests of releases
   that are neither confirmed nor on trial are removed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CommandError, DeviceError, DeviceRefused
from ..link import BoardLink
from . import bundle

MANIFEST_DIR = "/mpguard"
CONFIRMED = b"guard: confirmed"
ROLLED_BACK = b"guard: rolled back"


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
    """Stream `data` into the agent's `update.install`; return its answer (installed or
    refused, with the reason)."""
    return dict(link.stream("update.install", [], data, progress, timeout=timeout))


def deploy(link: BoardLink, data: bytes, *, progress: Callable[[int, int], None] | None = None,
           wait: float = 30.0, timeout: float = 30.0) -> DeployResult:
    """Deploy `data`; `wait` bounds the trial watch, `timeout` any silence of the board."""
    t0 = time.monotonic()
    link.soft_reset()  # a fresh heap for the install (boot.py runs, main.py does not)
    try:
        link.call("update.status")
    except DeviceRefused as e:  # an agent without this call: older than this host
        raise CommandError("the board's agent is too old for deploy: run `mpguard agent "
                           f"install` ({e.reason})") from None
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
    status = link.call("update.status")
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
