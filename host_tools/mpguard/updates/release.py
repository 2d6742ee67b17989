"""Build a release: sign an app folder as an update bundle and record its sequence number.

`build_release` is what `mpguard release build` calls; the bundle format is mpguard.updates.bundle.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any

from .. import jose
from ..errors import BundleError, CommandError, ProjectError
from ..files import atomic_write
from ..project import CONFIG_NAME, Project, check_targets
from . import bundle

KEYS_DIR = "keys"
DEFAULT_INVENTORY = "inventory.db"  # mpguard.inventory.db.DEFAULT_FILE (not imported: slow)


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
    check_appdir(proj, appdir)
    outp = check_output(appdir, out)
    name = app or Path(appdir).resolve().name
    files = bundle.collect(appdir, forbidden=protected_files(proj))
    if confirm_after is None:
        confirm_after = proj.confirm_after
    warnings = [] if confirm_after else confirm_warnings(files)
    key = proj.release_key(passphrase)  # before the lock: the passphrase KDF is slow
    targets = targets or proj.targets
    check_targets(targets)
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
        _write_then_record(proj, outp, data, name, seq, version, digest, measured)
    return {
        "out": str(outp), "app": name, "version": version, "seq": seq,
        "kid": proj.key_entry()["kid"], "size": len(data),
        "files": [[p, len(d)] for p, d in files], "manifest_sha256": digest,
        "measurement": measured,
        "targets": targets, "confirm_after": confirm_after, "warnings": warnings,
    }


def _write_then_record(proj: Project, outp: Path, data: bytes, name: str, seq: int,
                       version: str, digest: str, measured: str) -> None:
    """The bundle is written in full (a staged file beside `outp`) before its sequence is
    recorded, and put in place only after: a bundle that cannot be written records nothing,
    and a record that cannot be written leaves no bundle (and `outp` as it was)."""
    staged = outp.parent / f".{outp.name}.{secrets.token_hex(6)}.staged"
    try:
        atomic_write(staged, data, overwrite=False)
    except OSError as e:
        raise CommandError(f"cannot write the bundle {outp}: {e.strerror}") from None
    try:
        try:
            proj.record_release(name, seq, version, digest, measured)
        except OSError as e:
            raise ProjectError(f"cannot record sequence {seq} in {proj.releases_path}: "
                               f"{e.strerror}; no bundle was written") from None
        try:
            os.replace(staged, outp)
        except OSError as e:  # checked before; only a race gets here (outp became a folder)
            raise CommandError(f"cannot write the bundle {outp}: {e.strerror} (sequence {seq} "
                               "is recorded as issued and will not be used again)") from None
    finally:
        if os.path.lexists(staged):
            os.unlink(staged)


def check_appdir(proj: Project, appdir: str | Path) -> None:
    """Refuse an app folder that is the project's root, holds it, or lies in its keys folder:
    the bundle would carry the project's private keys, config and inventory."""
    app = Path(appdir).resolve()
    root = proj.root.resolve()
    keys_dir = root / KEYS_DIR
    if root.is_relative_to(app):
        what = "is the project's folder" if app == root else "holds the project's folder"
        raise _bad_app(f"{appdir} {what} ({root})",
                       "build from the app's own folder (e.g. apps/NAME with its main.py), "
                       "never the project's")
    if app.is_relative_to(keys_dir):
        raise _bad_app(f"{appdir} is inside the project's keys folder",
                       "build from the app's own folder, outside keys/")


def check_output(appdir: str | Path, out: str | Path) -> Path:
    """The bundle's path, refused (CommandError, exit 2) if it is a folder, its folder does
    not exist, or it lies inside the app folder (the next build would bundle the bundle)."""
    outp = Path(out)
    if outp.is_dir():
        raise CommandError(f"-o {out} is a folder: give the bundle's file name")
    parent = outp.parent
    if not parent.is_dir():
        raise CommandError(f"-o {out}: the folder {parent} does not exist")
    where = parent.resolve() / outp.name
    if where.is_relative_to(Path(appdir).resolve()):
        raise CommandError(f"-o {out} is inside the app folder {appdir}: the next build "
                           "would bundle it. Write the bundle outside the app folder")
    return outp


def protected_files(proj: Project) -> list[Path]:
    """Files and folders of the project never bundled, whatever the app folder: the keys
    folder, every configured private key, the config and the inventory database."""
    from ..identity import ca

    root = proj.root
    cfg = proj.config
    out = [root / KEYS_DIR, root / CONFIG_NAME, root / ca.KEY_PATH]
    for group in ("release_keys", "operator_keys"):
        for e in cfg.get(group) or []:
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                out.append(root / e["path"])
    inv = root / DEFAULT_INVENTORY
    url = cfg.get("inventory")
    if isinstance(url, str) and url.startswith("sqlite:///"):
        inv = root / url[len("sqlite:///"):].split("?", 1)[0]  # relative: the project's
    out += [inv.with_name(inv.name + s) for s in ("", "-wal", "-shm", "-journal")]
    return out


def _bad_app(detail: str, hint: str) -> BundleError:
    e = BundleError("bad_app", detail)
    e.hint = hint
    return e


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
