"""Build a release: sign an app folder as an update bundle and record its sequence number.

`build_release` is what `mpguard release build` calls; the bundle format is mpguard.updates.bundle.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from .. import jose
from ..errors import ProjectError
from ..files import atomic_write
from ..project import Project
from . import bundle


def build_release(
    proj: Project,
    appdir: str | Path,
    version: str,
    out: str | Path,
    *,
    passphrase: bytes | None,
    app: str | None = None,
    targets: list[str] | None = None,
    seq: int | None = None,
    expires: int | None = None,
    confirm_after: int | None = None,
    seq_jump: bool = False,
) -> dict[str, Any]:
    """Sign the app in `appdir` as bundle `out`; the sequence is the project's next one.

    An explicit `seq` must still be above every sequence issued before, and at most
    MAX_JUMP above the last unless `seq_jump` (the manifest then says "jump": true, which
    boards need to accept it). Nothing is written
    (bundle or record) unless the bundle builds. Returns a summary (out, app, version, seq,
    kid, size, files, manifest_sha256, measurement, targets, confirm_after, warnings).
    The sequence is chosen and recorded under the project's release lock, so builds running
    at the same time get distinct sequence numbers. `confirm_after` None takes the project's
    default (mpguard.json "confirm_after", else 0: the app confirms).
    """
    name = app or Path(appdir).resolve().name
    files = bundle.collect(appdir)
    if confirm_after is None:
        confirm_after = proj.confirm_after
    warnings = [] if confirm_after else confirm_warnings(files)
    key = proj.release_key(passphrase)  # before the lock: the passphrase KDF is slow
    targets = targets or proj.targets
    outp = Path(out)
    with proj.release_lock():
        last = proj.releases()["last_seq"]
        if seq is None:
            seq = last + 1
        elif seq <= last:
            raise ProjectError(f"sequence {seq} is not above the last issued ({last})")
        elif seq - last > bundle.MAX_JUMP and not seq_jump:
            raise ProjectError(f"sequence {seq} jumps {seq - last} above the last issued "
                               f"({last}), more than {bundle.MAX_JUMP}: boards would refuse it "
                               "(seq_jump). Use --seq-jump if this is meant")
        data = bundle.build(
            files, key, app=name, version=version, seq=seq, targets=targets,
            min_agent=proj.min_agent, expires=expires, confirm_after=confirm_after,
            jump=seq_jump and seq - last > bundle.MAX_JUMP,
        )
        token, _ = bundle.split(data)
        digest = hashlib.sha256(token).hexdigest()
        measured = jose.measurement(token)
        proj.record_release(name, seq, version, digest, measured)  # reserve the sequence first
    atomic_write(outp, data)
    return {
        "out": str(outp), "app": name, "version": version, "seq": seq,
        "kid": proj.key_entry()["kid"], "size": len(data),
        "files": [[p, len(d)] for p, d in files], "manifest_sha256": digest,
        "measurement": measured,
        "targets": targets, "confirm_after": confirm_after, "warnings": warnings,
    }


_CONFIRM_CALL = re.compile(rb"\bconfirm\s*\(")


def confirm_warnings(files: list[tuple[str, bytes]]) -> list[str]:
    """A warning when nothing will confirm the update: no `confirm(` call in the app's
    Python files and no healthy time. Such an app rolls back after its trial boots."""
    if any(p.endswith(".py") and _CONFIRM_CALL.search(d) for p, d in files):
        return []
    return ["the app never calls guard.confirm() and no --confirm-after is set: the board "
            "will keep it on trial and roll it back after a few resets. Call guard.confirm() "
            "once the app is healthy, or build with --confirm-after SECONDS (or set "
            '"confirm_after" in mpguard.json)']
