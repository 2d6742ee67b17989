"""Update bundles: build one (host) and explain one (`mpguard release verify`).

Format (docs/bundle-format.md, decision docs/decisions/0005-bundle.md)::

    header   8 bytes   b"MPGB" | format (1) | flags (0) | manifest length (uint16, big-endian)
    manifest           JWS compact serialization (RFC 7515), ES256, kid = RFC 7638 thumbprint
    files              the file contents, in manifest order, back to back

The manifest's payload is compact JSON::

    {"fmt": 1, "seq": 7, "targets": ["esp32"], "app": "blinky", "ver": "1.2.0",
     "agent": "0.1.0", "iat": 1790000000, "exp": 1800000000, "confirm": 60,
     "files": [["main.py", 120, "<sha256 hex>"], ...], "remove": ["old.py"]}

`exp` and `confirm` are optional. The limits below are the board's (agent/guard/bundle.py
holds the same numbers; tests/host/test_bundle.py checks that they agree).

Verification steps of `inspect`, in order (the board does the same before writing):
1. header: magic, format, manifest length;
2. signature of the manifest against the trust anchors (RFC 7515 section 5.2);
3. manifest fields, paths, counts and sizes;
4. total length = header + manifest + sum of file sizes; every file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BundleError

MAGIC = b"MPGB"
FORMAT = 1
HDR_LEN = 8
MAX_MANIFEST = 4096
MAX_FILES = 32
MAX_REMOVE = 32
MAX_PATH = 64
MAX_DEPTH = 4
MAX_FILE = 1024 * 1024
MAX_TOTAL = 2 * 1024 * 1024
MAX_NAME = 32
SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RESERVED = ("guard", "guard.py", "guard.mpy", "_simhw.py", "_simhw.mpy")
# Names never taken from an app folder into a bundle.
SKIP_NAMES = ("__pycache__",)



def check_path(path: str) -> None:
    """Raise BundleError('bad_path'|'reserved_path') unless `path` is allowed in a bundle."""
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH:
        raise BundleError("bad_path", path)
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise BundleError("bad_path", path)
    for s in parts:
        if not s or s[0] == "." or any(c not in SAFE_CHARS for c in s):
            raise BundleError("bad_path", path)
    top = parts[1] if parts[0] == "lib" and len(parts) > 1 else parts[0]
    if top in RESERVED:
        raise BundleError("reserved_path", path)


def collect(appdir: str | Path) -> list[tuple[str, bytes]]:
    """Every file of an app folder as (relative path, contents), sorted, `main.py` first.

    Hidden names and `__pycache__` are skipped; anything else must be a valid bundle path.
    """
    root = Path(appdir)
    if not root.is_dir():
        raise BundleError("bad_app", f"{root} is not a folder")
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(s.startswith(".") or s in SKIP_NAMES for s in rel.parts):
            continue
        if p.is_file():
            name = rel.as_posix()
            check_path(name)
            out.append((name, p.read_bytes()))
    if not any(n == "main.py" for n, _ in out):
        raise BundleError("bad_app", f"{root} has no main.py (the app's entry point)")
    out.sort(key=lambda f: (f[0] != "main.py", f[0]))
    return out


def _check_name(what: str, v: str) -> None:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_NAME:
        raise BundleError("bad_manifest", f"{what} must be 1..{MAX_NAME} characters")


def _check_version(v: str) -> None:
    parts = v.split(".") if isinstance(v, str) else []
    if not parts or len(parts) > 4 or not all(p.isdigit() for p in parts):
        raise BundleError("bad_manifest", f"agent version {v!r} is not like 1.2.3")


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
) -> dict[str, Any]:
    """The manifest dict for `files`, checked against every board limit."""
    _check_name("app name", app)
    _check_name("version", version)
    _check_version(min_agent)
    if not isinstance(seq, int) or not 1 <= seq < 2**53:
        raise BundleError("bad_manifest", "sequence must be a positive integer")
    if not targets or len(targets) > 8:
        raise BundleError("bad_manifest", "1..8 target board kinds")
    for t in targets:
        _check_name("target", t)
    if not files or len(files) > MAX_FILES:
        raise BundleError("too_many_files", f"{len(files)} files (1..{MAX_FILES})")
    remove = list(remove)
    if len(remove) > MAX_REMOVE:
        raise BundleError("too_many_files", f"{len(remove)} to remove (max {MAX_REMOVE})")
    seen: set[str] = set()
    dirs: set[str] = set()
    total = 0
    entries = []
    for path, data in files:
        check_path(path)
        if path in seen:
            raise BundleError("dup_path", path)
        seen.add(path)
        parts = path.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if len(data) > MAX_FILE:
            raise BundleError("too_large", f"{path} is {len(data)} B (max {MAX_FILE})")
        total += len(data)
        entries.append([path, len(data), hashlib.sha256(data).hexdigest()])
    if seen & dirs:
        raise BundleError("bad_path", f"{sorted(seen & dirs)[0]} is both a file and a folder")
    for path in remove:
        check_path(path)
        if path in seen:
            raise BundleError("dup_path", f"{path} is both shipped and removed")
    if total > MAX_TOTAL:
        raise BundleError("too_large", f"{total} B of files (max {MAX_TOTAL})")
    iat = int(time.time()) if issued_at is None else int(issued_at)
    m: dict[str, Any] = {
        "fmt": FORMAT, "seq": seq, "targets": list(targets), "app": app, "ver": version,
        "agent": min_agent, "iat": iat,
    }
    if expires is not None:
        if expires <= iat:
            raise BundleError("expired", "expiry is not after the issue time")
        m["exp"] = int(expires)
    if confirm_after:
        if not isinstance(confirm_after, int) or confirm_after < 0:
            raise BundleError("bad_manifest", "confirm_after must be a positive number of seconds")
        m["confirm"] = confirm_after
    m["files"] = entries
    if remove:
        m["remove"] = remove
    return m


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
    min_agent, remove, expires, confirm_after, issued_at).
    """
    from .. import jose

    m = make_manifest(files, **manifest)
    payload = json.dumps(m, separators=(",", ":")).encode()
    token = jose.sign(payload, key).encode()
    if len(token) > MAX_MANIFEST:
        raise BundleError("too_large", f"manifest is {len(token)} B (max {MAX_MANIFEST}): "
                          "fewer files or shorter paths")
    return assemble(token, [d for _, d in files])


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


def _unverified_payload(token: bytes) -> dict[str, Any]:
    import base64

    parts = token.split(b".")
    if len(parts) != 3:
        raise BundleError("bad_manifest", "not a JWS compact serialization")
    try:
        raw = base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4))
        hdr = json.loads(base64.urlsafe_b64decode(parts[0] + b"=" * (-len(parts[0]) % 4)))
        m = json.loads(raw)
    except ValueError:
        raise BundleError("bad_manifest", "undecodable JWS") from None
    if not isinstance(m, dict) or not isinstance(hdr, dict):
        raise BundleError("bad_manifest", "not a JSON object")
    m["_kid"] = hdr.get("kid")
    return m


def inspect(bundle: bytes, anchors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Explain a bundle: header, manifest, files, and whether it verifies.

    `anchors` is the trust-anchor set (kid -> public key, as `mpguard.jose.verify` takes);
    without it the signature is reported as not checked. Never raises for a bad bundle:
    the report's `ok` is False and `problems` lists (reason, detail) pairs. The manifest
    shown is the signed one only when `signature` is "valid".
    """
    from .. import jose

    report: dict[str, Any] = {"size": len(bundle), "ok": False, "problems": []}
    problems: list[list[str]] = report["problems"]
    try:
        token, payload = split(bundle)
    except BundleError as e:
        problems.append([e.reason, e.detail or ""])
        return report
    report["manifest_sha256"] = hashlib.sha256(token).hexdigest()
    try:
        m = _unverified_payload(token)
    except BundleError as e:
        problems.append([e.reason, e.detail or ""])
        return report
    report["kid"] = m.pop("_kid")
    if anchors is None:
        report["signature"] = "not_checked"
        problems.append(["no_anchors", "pass the project's or a board's trust anchors"])
    else:
        try:
            _, signed = jose.verify(token.decode("ascii", "replace"), dict(anchors))
            m = json.loads(signed)
            report["signature"] = "valid"
        except Exception as e:  # any failure of verification is a verdict, not a crash
            reason = getattr(e, "reason", None) or (
                "unknown_key" if report["kid"] not in anchors else "bad_sig")
            report["signature"] = reason
            problems.append([reason, str(e)])
    report["manifest"] = m
    try:
        files = m.get("files")
        if not isinstance(files, list):
            raise BundleError("bad_manifest", "no file list")
        make_manifest(
            [(f[0], b"") for f in files] if all(isinstance(f, list) and f for f in files) else [],
            app=m.get("app"), version=m.get("ver"), seq=m.get("seq"),
            targets=m.get("targets") or [], min_agent=m.get("agent", ""),
            remove=m.get("remove", []), issued_at=0,
        )
        if m.get("fmt") != FORMAT:
            raise BundleError("bad_manifest", f"format {m.get('fmt')!r}")
        sizes = [f[1] for f in files]
        if not all(isinstance(n, int) and 0 <= n <= MAX_FILE for n in sizes):
            raise BundleError("bad_manifest", "file sizes")
    except BundleError as e:
        problems.append([e.reason, e.detail or ""])
        return report
    except (TypeError, AttributeError, IndexError) as e:
        problems.append(["bad_manifest", str(e)])
        return report
    if sum(sizes) != len(payload):
        problems.append(["bad_length", f"files add up to {sum(sizes)} B, payload is {len(payload)} B"])
    rows = []
    off = 0
    for path, n, h in files:
        data = payload[off : off + n]
        off += n
        ok = len(data) == n and hashlib.sha256(data).hexdigest() == h
        rows.append({"path": path, "size": n, "sha256": h, "ok": ok})
        if not ok:
            problems.append(["bad_hash", path])
    report["files"] = rows
    if "exp" in m and m["exp"] <= time.time():
        problems.append(["expired", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m["exp"]))])
    report["ok"] = not problems
    return report
