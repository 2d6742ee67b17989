"""Build a release: sign an app folder as an update bundle and record its sequence number.

`build_release` is what `mpguard release build` calls; the bundle format is mpguard.updates.bundle.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import ProjectError
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
    confirm_after: int = 0,
    remove: list[str] | None = None,
) -> dict[str, Any]:
    """Sign the app in `appdir` as bundle `out`; the sequence is the project's next one.

    An explicit `seq` must still be above every sequence issued before. Nothing is written
    (bundle or record) unless the bundle builds. Returns a summary (out, app, version, seq,
    kid, size, files, manifest_sha256, targets).
    """
    name = app or Path(appdir).resolve().name
    files = bundle.collect(appdir)
    last = proj.releases()["last_seq"]
    if seq is None:
        seq = last + 1
    elif seq <= last:
        raise ProjectError(f"sequence {seq} is not above the last issued ({last})")
    key = proj.release_key(passphrase)
    targets = targets or proj.targets
    data = bundle.build(
        files, key, app=name, version=version, seq=seq, targets=targets,
        min_agent=proj.min_agent, remove=remove or [], expires=expires,
        confirm_after=confirm_after,
    )
    token, _ = bundle.split(data)
    digest = hashlib.sha256(token).hexdigest()
    proj.record_release(name, seq, version, digest)  # reserve the sequence first
    outp = Path(out)
    tmp = outp.with_name(f".{outp.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, outp)
    return {
        "out": str(outp), "app": name, "version": version, "seq": seq,
        "kid": proj.key_entry()["kid"], "size": len(data),
        "files": [[p, len(d)] for p, d in files], "manifest_sha256": digest,
        "targets": targets,
    }
