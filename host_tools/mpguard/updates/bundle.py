"""Update bundles: build one (host) and explain one (`mpguard release verify`).

Format (docs/bundle-format.md, decision docs/decisions/0005-bundle.md)::

    header   8 bytes   b"MPGB" | format (1) | flags (0) | manifest length (uint16, big-endian)
    manifest           JWS compact serialization (RFC 7515), ES256, kid = RFC 7638 thumbprint
    files              the file contents, in manifest order, back to back

The manifest's payload is compact JSON::

    {"fmt": 1, "seq": 7, "targets": ["esp32"], "app": "blinky", "ver": "1.2.0",
     "agent": "0.1.0", "iat": 1790000000, "exp": 1800000000, "confirm": 60,
     "files": [["main.py", 120, "<sha256 hex>"], ...], "remove": ["old.py"]}

`exp`, `confirm` and `jump` are optional (`remove` too: it has no effect, nothing is
carried over). The limits are the board's (agent/guard/manifest.py and bundle.py hold the
same numbers; tests/host/test_bundle.py checks that they agree).

Verification steps of `inspect`, in order (the board does the same before writing):
1. header: magic, format, manifest length;
2. signature of the manifest against the trust anchors (RFC 7515 section 5.2);
3. manifest fields, paths, counts and sizes (the board's rules: manifest.check_fields);
4. total length = header + manifest + sum of file sizes; every file's SHA-256;
5. with the host's clock: expiry, and an issue time not over MAX_AHEAD in the future.
The release's measurement is the SHA-256 of the manifest's signing input (jose.measurement),
what a board records for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BundleError, JoseError
from .manifest import (  # noqa: F401  (re-exported: the format's limits live in manifest)
    FORMAT,
    MAX_AHEAD,
    MAX_CONFIRM,
    MAX_DEPTH,
    MAX_FILE,
    MAX_FILES,
    MAX_JUMP,
    MAX_NAME,
    MAX_PATH,
    MAX_REMOVE,
    MAX_TOTAL,
    RESERVED,
    SAFE_CHARS,
    Manifest,
    check_path,
    printable,
)

MAGIC = b"MPGB"
HDR_LEN = 8
MAX_MANIFEST = 4096
# Names never taken from an app folder into a bundle.
SKIP_NAMES = ("__pycache__",)


def _refuse(detail: str, hint: str) -> BundleError:
    e = BundleError("bad_app", detail)
    e.hint = hint
    return e


# PEM armour of any private key: "-----BEGIN (EC |RSA |ENCRYPTED |OPENSSH )PRIVATE KEY-----"
_PEM_PRIVATE = b"PRIVATE KEY-----"
_DER_MAX = 16384  # a DER private key is short; longer files are not tried as one


def is_private_key(data: bytes) -> bool:
    """Whether `data` is (or holds) a private key: PEM armour anywhere in it, or the whole
    file parses as a DER private key (PKCS#8, SEC1 or PKCS#1; encrypted PKCS#8 too)."""
    if _PEM_PRIVATE in data:
        return True
    if not data.startswith(b"\x30") or len(data) > _DER_MAX:  # DER: a SEQUENCE
        return False
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:  # "password was not given but private key is encrypted": a key
        return True
    except (ValueError, UnsupportedAlgorithm):  # not a key cryptography can read
        return False
    return True


_SQLITE = b"SQLite format 3\x00"
# an SQLite write-ahead log (its magic, either byte order of its checksums): the pages of a
# database in use, an inventory's rows among them when it is copied while a station runs
_SQLITE_WAL = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
# tables only an mpguard inventory has together (mpguard.inventory.schema)
_INVENTORY_TABLES = {"devices", "certificates", "events"}


def is_inventory(data: bytes) -> bool:
    """Whether `data` is an SQLite database with an mpguard inventory's tables (a copy of a
    project's inventory, under any name: its boards, MACs, UEIDs, certificates and history are
    not for every board that installs the app). Read from the bytes, never opened as a file."""
    if not data.startswith(_SQLITE):
        return False
    import sqlite3

    db = bytearray(data)
    db[18:20] = b"\x01\x01"  # read as a rollback-journal database (an inventory is in WAL mode)
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(bytes(db))
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:  # damaged, or a newer format: not told an inventory
        return False
    finally:
        conn.close()
    return _INVENTORY_TABLES <= names


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def collect(appdir: str | Path, forbidden: Iterable[Path] = ()) -> list[tuple[str, bytes]]:
    """Every file of an app folder as (relative path, contents), sorted, `main.py` first.

    Hidden names and `__pycache__` are skipped, and so is anything that is not a regular file
    (FIFOs, devices); anything else must be a valid bundle path. A symlink to a file inside
    the folder is followed (the file's contents go in under the link's name); a symlink that
    leads outside the folder or nowhere, and a symlinked folder, are refused. A file that is
    a private key (is_private_key) is refused, and so is one of `forbidden` (files, or folders
    and all below them; compared by resolved path and by inode, so a hard link is caught).
    A copy of an mpguard inventory (is_inventory) is refused too. A refusal names the file,
    never its contents.
    """
    root = Path(appdir)
    if not root.is_dir():
        raise BundleError("bad_app", f"{root} is not a folder")
    base = root.resolve()
    banned = [f.resolve() for f in forbidden]
    banned_ids = set()
    for f in banned:
        with contextlib.suppress(OSError):
            st = f.stat()
            banned_ids.add((st.st_dev, st.st_ino))
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        keep = []
        for n in sorted(dirnames):
            if n.startswith(".") or n in SKIP_NAMES:
                continue
            if (d / n).is_symlink():
                raise _refuse(f"{d / n} is a symlinked folder",
                              "copy the folder into the app instead of linking it")
            keep.append(n)
        dirnames[:] = keep
        for n in sorted(filenames):
            if n.startswith(".") or n in SKIP_NAMES:
                continue
            p = d / n
            rel = p.relative_to(root)
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(base) or not target.is_file():
                    raise _refuse(f"{p} is a symlink that leads outside the app folder "
                                  "(or to nothing)",
                                  "only files inside the app folder go into a bundle: copy "
                                  "the file in, or remove the link")
                read_from = target
            elif p.is_file():
                read_from = p
            else:
                continue  # not a regular file: a FIFO, socket or device
            try:
                st = read_from.stat()
            except OSError as e:
                raise BundleError("bad_app", f"cannot read {p}: {e.strerror}") from None
            real = read_from.resolve()
            if (st.st_dev, st.st_ino) in banned_ids or any(real.is_relative_to(f)
                                                           for f in banned):
                raise _refuse(f"{p} is one of the project's own files (keys, config or "
                              "inventory)", "the project's keys, config and inventory never "
                              "go into a bundle: move the file out of the app folder")
            name = rel.as_posix()
            check_path(name)
            try:
                data = _read_nofollow(read_from)
            except OSError as e:
                raise BundleError("bad_app", f"cannot read {p}: {e.strerror}") from None
            if is_private_key(data):
                raise _refuse(f"{p} is a private key",
                              "private keys never go into a bundle (bundles are not "
                              "secret): move the file out of the app folder")
            if data[:4] in _SQLITE_WAL:
                raise _refuse(f"{p} is an SQLite write-ahead log (a database copied while in "
                              "use: an inventory's rows may be in it)",
                              "a database's log never goes into a bundle: move the file out "
                              "of the app folder")
            if is_inventory(data):
                raise _refuse(f"{p} is a copy of an mpguard inventory",
                              "an inventory (boards, MACs, certificates, history) never goes "
                              "into a bundle (bundles are not secret): move the file out of "
                              "the app folder")
            out.append((name, data))
    if not any(n == "main.py" for n, _ in out):
        raise BundleError("bad_app", f"{root} has no main.py (the app's entry point)")
    out.sort(key=lambda f: (f[0] != "main.py", f[0]))
    return out


def make_manifest(
    files: Sequence[tuple[str, bytes]],
    *,
    app: str,
    version: str,
    seq: int,
    targets: Sequence[str],
    min_agent: str = "0.1.0",
    remove: Iterable[str] = (),
    expires: int | None = None,
    confirm_after: int = 0,
    issued_at: int | None = None,
    jump: bool = False,
) -> dict[str, Any]:
    """The manifest dict for `files`, checked against every board limit."""
    if confirm_after and (type(confirm_after) is not int or not 0 < confirm_after <= MAX_CONFIRM):
        raise BundleError("bad_manifest",
                          f"confirm_after must be 1..{MAX_CONFIRM} seconds (a day at most)")
    m = Manifest.from_dict({
        "fmt": FORMAT, "seq": seq, "targets": list(targets), "app": app, "ver": version,
        "agent": min_agent, "iat": int(time.time()) if issued_at is None else int(issued_at),
        "files": [[p, len(d), hashlib.sha256(d).hexdigest()] for p, d in files],
        "remove": list(remove),
        **({"exp": int(expires)} if expires is not None else {}),
        **({"confirm": confirm_after} if confirm_after else {}),
        **({"jump": True} if jump else {}),
    })
    m.validate()
    return m.to_dict()


def assemble(token: bytes | str, files: Sequence[bytes]) -> bytes:
    """Header + manifest token + file contents (no checks: tests build bad bundles with it)."""
    tok = token.encode() if isinstance(token, str) else token
    return MAGIC + struct.pack(">BBH", FORMAT, 0, len(tok)) + tok + b"".join(files)


def build(
    files: Sequence[tuple[str, bytes]],
    key: Any,
    **manifest: Any,
) -> bytes:
    """A signed bundle of `files` ((path, contents) in install order), signed with `key`.

    `manifest` takes the keyword arguments of `make_manifest` (app, version, seq, targets,
    min_agent, remove, expires, confirm_after, issued_at, jump).
    """
    from .. import jose

    m = make_manifest(files, **manifest)
    payload = json.dumps(m, separators=(",", ":")).encode()
    token = jose.sign(payload, key).encode()
    if len(token) > MAX_MANIFEST:
        raise BundleError("too_large", f"manifest is {len(token)} B (max {MAX_MANIFEST}): "
                          "fewer files or shorter paths")
    return assemble(token, [d for _, d in files])


def _utc(t: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    except (OverflowError, ValueError, OSError):
        return str(t)


def split(bundle: bytes) -> tuple[bytes, bytes]:
    """(manifest token, payload) of a bundle; BundleError if the header is bad."""
    if len(bundle) < HDR_LEN:
        raise BundleError("truncated", f"{len(bundle)} B")
    magic, (fmt, flags, mlen) = bundle[:4], struct.unpack(">BBH", bundle[4:8])
    if magic != MAGIC or fmt != FORMAT or flags != 0 or mlen == 0:
        raise BundleError("bad_header")
    if mlen > MAX_MANIFEST:
        raise BundleError("too_large", f"manifest is {mlen} B (max {MAX_MANIFEST})")
    if HDR_LEN + mlen > len(bundle):
        raise BundleError("truncated")
    return bundle[HDR_LEN : HDR_LEN + mlen], bundle[HDR_LEN + mlen :]


def _unverified_payload(token: bytes) -> tuple[dict[str, Any], Any]:
    """(manifest JSON object, kid) of a token whose signature is not (yet) checked."""
    from .. import jose

    parts = token.split(b".")
    if len(parts) != 3:
        raise BundleError("bad_manifest", "not a JWS compact serialization")
    try:
        hdr = json.loads(jose.b64u_dec(parts[0]))
        m = json.loads(jose.b64u_dec(parts[1]), parse_constant=lambda c: None)
    except (ValueError, RecursionError, MemoryError, JoseError):
        raise BundleError("bad_manifest", "undecodable JWS") from None
    if not isinstance(m, dict) or not isinstance(hdr, dict):
        raise BundleError("bad_manifest", "not a JSON object")
    return m, hdr.get("kid")


def inspect(bundle: bytes, anchors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Explain a bundle: header, manifest, files, and whether it verifies.

    `anchors` is the trust-anchor set (kid -> public key, as `mpguard.jose.verify` takes);
    without it the signature is reported as not checked. Never raises for a bad bundle:
    the report's `ok` is False and `problems` lists (reason, detail) pairs. `manifest` is the
    signed manifest only when `signature` is "valid"; otherwise it is what the token claims,
    unverified (print it only through `printable`).
    """
    from .. import jose

    report: dict[str, Any] = {"size": len(bundle), "ok": False, "problems": []}
    problems: list[list[str]] = report["problems"]

    def problem(e: BundleError | JoseError) -> dict[str, Any]:
        problems.append([e.reason, printable(getattr(e, "detail", None) or "", 200)])
        return report

    try:
        token, payload = split(bundle)
    except BundleError as e:
        return problem(e)
    report["manifest_sha256"] = hashlib.sha256(token).hexdigest()
    report["measurement"] = jose.measurement(token)
    try:
        claimed, kid = _unverified_payload(token)
    except BundleError as e:
        return problem(e)
    report["kid"] = printable(kid)
    report["manifest"] = claimed
    if anchors is None:
        report["signature"] = "not_checked"
        problems.append(["no_anchors", "pass the project's or a board's trust anchors"])
        return report
    try:
        _, signed = jose.verify(token, dict(anchors))
    except JoseError as e:
        report["signature"] = e.reason
        return problem(e)
    report["signature"] = "valid"
    try:
        m = Manifest.from_json(signed)
        report["manifest"] = m.to_dict()
        m.validate()
    except BundleError as e:
        return problem(e)
    if m.size != len(payload):
        problems.append(["bad_length", f"files add up to {m.size} B, payload is {len(payload)} B"])
    rows = []
    off = 0
    for f in m.files:
        data = payload[off : off + f.size]
        off += f.size
        ok = len(data) == f.size and hashlib.sha256(data).hexdigest() == f.sha256
        rows.append({"path": f.path, "size": f.size, "sha256": f.sha256, "ok": ok})
        if not ok:
            problems.append(["bad_hash", f.path])
    report["files"] = rows
    now = time.time()
    if m.exp is not None and m.exp <= now:
        problems.append(["expired", _utc(m.exp)])
    if m.iat > now + MAX_AHEAD:
        problems.append(["future_iat", _utc(m.iat)])
    report["ok"] = not problems
    return report
