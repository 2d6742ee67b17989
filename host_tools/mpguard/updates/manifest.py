"""The update manifest as a typed object (python-tuf's metadata pattern).

`Manifest.from_dict(d)` checks types strictly and never raises anything but BundleError;
`validate()` checks the board's limits and path rules; `to_dict()` gives the JSON the
release key signs. Build (`bundle.make_manifest`), explain (`bundle.inspect`) and the tests
share it. The board checks the same rules in agent/guard/bundle.py (tests/host/test_bundle.py
keeps the limits equal; tests/agent/test_bundle_bad.py checks the board's refusals).

Field rules (the board's):
- integers are JSON integers in [0, 2**53), never booleans;
- strings (app, version, targets) are 1..MAX_NAME printable ASCII characters;
- `agent` is a version like 1.2.3 (1 to 4 decimal parts);
- files are [path, size, sha256-hex] triples; paths follow `check_path`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import BundleError

FORMAT = 1
MAX_FILES = 32
MAX_REMOVE = 32
MAX_PATH = 64
MAX_DEPTH = 4
MAX_FILE = 1024 * 1024
MAX_TOTAL = 2 * 1024 * 1024
MAX_NAME = 32
MAX_TARGETS = 8
MAX_INT = 2**53
SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RESERVED = ("guard", "guard.py", "guard.mpy", "_simhw.py", "_simhw.mpy")
_HEX = frozenset("0123456789abcdef")


def check_path(path: Any) -> None:
    """Raise BundleError('bad_path'|'reserved_path') unless `path` is allowed in a bundle."""
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH:
        raise BundleError("bad_path", printable(path))
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise BundleError("bad_path", path)
    for s in parts:
        if not s or s[0] == "." or any(c not in SAFE_CHARS for c in s):
            raise BundleError("bad_path", printable(path))
    top = parts[1] if parts[0] == "lib" and len(parts) > 1 else parts[0]
    if top in RESERVED:
        raise BundleError("reserved_path", path)


def printable(v: Any, limit: int = 80) -> str:
    """Unverified text made safe to print: no control characters, no escapes, bounded."""
    s = v if isinstance(v, str) else repr(v)
    s = s.encode("ascii", "backslashreplace").decode("ascii")
    s = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in s)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _int(d: dict[str, Any], k: str, required: bool = True) -> int | None:
    v = d.get(k)
    if v is None and not required and k not in d:
        return None
    if type(v) is not int or not 0 <= v < MAX_INT:
        raise BundleError("bad_manifest", f"{k} must be an integer in [0, 2**53)")
    return v


def _req(d: dict[str, Any], k: str) -> int:
    v = _int(d, k)
    return v if v is not None else 0  # _int raised for a missing required field


def _name(what: str, v: Any) -> str:
    if (not isinstance(v, str) or not 0 < len(v) <= MAX_NAME
            or not all(" " <= c <= "~" for c in v)):
        raise BundleError("bad_manifest", f"{what} must be 1..{MAX_NAME} printable ASCII characters")
    return v


def check_version(v: Any) -> str:
    parts = v.split(".") if isinstance(v, str) else []
    if (not parts or len(parts) > 4
            or not all(p and len(p) <= 9 and all(c in "0123456789" for c in p) for p in parts)):
        raise BundleError("bad_manifest", f"agent version {printable(v)} is not like 1.2.3")
    return v


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def to_list(self) -> list[Any]:
        return [self.path, self.size, self.sha256]


@dataclass
class Manifest:
    seq: int
    targets: list[str]
    app: str
    ver: str
    agent: str
    iat: int
    files: list[FileEntry]
    remove: list[str] = field(default_factory=list)
    exp: int | None = None
    confirm: int | None = None
    fmt: int = FORMAT

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Strict types: anything malformed is BundleError('bad_manifest'), never a crash."""
        if not isinstance(d, dict):
            raise BundleError("bad_manifest", "not a JSON object")
        if d.get("fmt") != FORMAT or type(d.get("fmt")) is not int:
            raise BundleError("bad_manifest", f"format {printable(d.get('fmt'))} is not {FORMAT}")
        targets = d.get("targets")
        if not isinstance(targets, list):
            raise BundleError("bad_manifest", "targets must be a list")
        files = d.get("files")
        remove = d.get("remove", [])
        if not isinstance(files, list) or not isinstance(remove, list):
            raise BundleError("bad_manifest", "files and remove must be lists")
        entries = []
        for f in files:
            if not isinstance(f, list) or len(f) != 3:
                raise BundleError("bad_manifest", "a file entry is not [path, size, sha256]")
            p, n, h = f
            if type(n) is not int or not 0 <= n < MAX_INT:
                raise BundleError("bad_manifest", f"size of {printable(p)} is not an integer")
            if not isinstance(h, str) or len(h) != 64 or not set(h) <= _HEX:
                raise BundleError("bad_manifest", f"sha256 of {printable(p)} is not 64 hex digits")
            if not isinstance(p, str):
                raise BundleError("bad_path", printable(p))
            entries.append(FileEntry(p, n, h))
        for r in remove:
            if not isinstance(r, str):
                raise BundleError("bad_path", printable(r))
        return cls(
            seq=_req(d, "seq"), iat=_req(d, "iat"), exp=_int(d, "exp", False),
            confirm=_int(d, "confirm", False),
            app=_name("app name", d.get("app")), ver=_name("version", d.get("ver")),
            agent=check_version(d.get("agent")),
            targets=[_name("target", t) for t in targets], files=entries,
            remove=list(remove),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse signed JSON strictly: no NaN/Infinity, no duplicate members."""
        def no_constants(c: str) -> Any:
            raise BundleError("bad_manifest", f"{c} is not JSON")

        def no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            d = dict(pairs)
            if len(d) != len(pairs):
                raise BundleError("bad_manifest", "a member appears twice")
            return d

        try:
            d = json.loads(raw, parse_constant=no_constants, object_pairs_hook=no_dups)
        except (ValueError, RecursionError):
            raise BundleError("bad_manifest", "not valid JSON") from None
        return cls.from_dict(d)

    def validate(self) -> None:
        """The board's limits and rules; BundleError with the board's reason otherwise."""
        if not 1 <= self.seq:
            raise BundleError("bad_manifest", "sequence must be a positive integer")
        if not 0 < len(self.targets) <= MAX_TARGETS:
            raise BundleError("bad_manifest", f"1..{MAX_TARGETS} target board kinds")
        if not self.files or len(self.files) > MAX_FILES:
            raise BundleError("too_many_files", f"{len(self.files)} files (1..{MAX_FILES})")
        if len(self.remove) > MAX_REMOVE:
            raise BundleError("too_many_files", f"{len(self.remove)} to remove (max {MAX_REMOVE})")
        if self.exp is not None and self.exp <= self.iat:
            raise BundleError("expired", "expiry is not after the issue time")
        seen: set[str] = set()
        dirs: set[str] = set()
        total = 0
        for f in self.files:
            check_path(f.path)
            if f.path in seen:
                raise BundleError("dup_path", f.path)
            seen.add(f.path)
            parts = f.path.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if f.size > MAX_FILE:
                raise BundleError("too_large", f"{f.path} is {f.size} B (max {MAX_FILE})")
            total += f.size
        if seen & dirs:
            raise BundleError("bad_path", f"{sorted(seen & dirs)[0]} is both a file and a folder")
        for p in self.remove:
            check_path(p)
            if p in seen:
                raise BundleError("dup_path", f"{p} is both shipped and removed")
        if total > MAX_TOTAL:
            raise BundleError("too_large", f"{total} B of files (max {MAX_TOTAL})")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The signed JSON object, in the order the board documents (docs/bundle-format.md)."""
        m: dict[str, Any] = {
            "fmt": self.fmt, "seq": self.seq, "targets": list(self.targets), "app": self.app,
            "ver": self.ver, "agent": self.agent, "iat": self.iat,
        }
        if self.exp is not None:
            m["exp"] = self.exp
        if self.confirm:
            m["confirm"] = self.confirm
        m["files"] = [f.to_list() for f in self.files]
        if self.remove:
            m["remove"] = list(self.remove)
        return m

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()
