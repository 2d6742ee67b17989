"""The update manifest as a typed object (python-tuf's metadata pattern).

`Manifest.from_json(raw)` / `from_dict(d)` check every field with the board's rules, in the
board's order and with the board's reasons, and never raise anything but BundleError;
`validate()` adds what only a builder checks (expiry after the issue time); `to_dict()` gives
the JSON the release key signs. Build (`bundle.make_manifest`), explain (`bundle.inspect`)
and the tests share it. The board checks the same rules in agent/guard/manifest.py:
tests/host/test_bundle.py keeps the limits equal, and tests/agent/test_manifest_rules.py
runs one table of manifests through both and wants the same verdict from each.

Field rules (`check_fields`, the board's `guard.manifest.check`):
- the JSON text: printable ASCII, an object only at the top, nesting at most 3 levels, no
  member twice, no NaN/Infinity (checked before it is parsed);
- integers (seq, iat, exp, confirm, sizes) are JSON integers in [0, 2**53), never booleans or
  floats; fmt is the integer 1; seq >= 1; confirm at most MAX_CONFIRM; "jump", when
  present, exactly true;
- app, version and targets are 1..MAX_NAME printable ASCII characters; 1..8 targets;
- `agent` is a version like 1.2.3 (1 to 4 parts of 1 to 9 ASCII digits);
- files are 1..MAX_FILES [path, size, sha256] triples (64 lowercase hex digits); paths
  follow `check_path`; a file at most MAX_FILE bytes, all at most MAX_TOTAL; `remove` at
  most MAX_REMOVE paths (kept valid; no effect: a release is exactly what it lists).
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
MAX_CONFIRM = 86400  # seconds of healthy time (a day): a board's timer takes ms < 2**31
MAX_JUMP = 2**20  # sequence numbers a release may skip above a board's without "jump": true
MAX_AHEAD = 315576000  # seconds (10 years) an iat may be past the newest time a board knows
JSON_DEPTH = 3  # {"files": [[path, size, sha256]]}
SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RESERVED = ("guard", "guard.py", "guard.mpy", "_simhw", "_simhw.py", "_simhw.mpy")
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


def _is_int(v: Any) -> bool:
    return type(v) is int and 0 <= v < MAX_INT


def _name(what: str, v: Any) -> str:
    if (not isinstance(v, str) or not 0 < len(v) <= MAX_NAME
            or not all(" " <= c <= "~" for c in v)):
        raise BundleError("bad_manifest", f"{what} must be 1..{MAX_NAME} printable ASCII characters")
    return v


def check_version(v: Any) -> str:
    parts = v.split(".") if isinstance(v, str) else []
    if (not parts or len(parts) > 4
            or not all(0 < len(p) <= 9 and all(c in "0123456789" for c in p) for p in parts)):
        raise BundleError("bad_manifest", f"agent version {printable(v)} is not like 1.2.3")
    return v


def check_fields(d: Any) -> int:
    """The board's field rules (guard.manifest.check), in its order and with its reasons.

    Returns the files' total size; BundleError for the first rule broken."""
    if not isinstance(d, dict):
        raise BundleError("bad_manifest", "not a JSON object")
    if type(d.get("fmt")) is not int or d["fmt"] != FORMAT:
        raise BundleError("bad_manifest", f"format {printable(d.get('fmt'))} is not {FORMAT}")
    for k in ("seq", "iat"):
        if not _is_int(d.get(k)):
            raise BundleError("bad_manifest", f"{k} must be an integer in [0, 2**53)")
    for k in ("exp", "confirm"):
        if k in d and not _is_int(d[k]):
            raise BundleError("bad_manifest", f"{k} must be an integer in [0, 2**53)")
    if d["seq"] < 1:
        raise BundleError("bad_manifest", "sequence must be a positive integer")
    if d.get("confirm", 0) > MAX_CONFIRM:
        raise BundleError("bad_manifest", f"confirm must be at most {MAX_CONFIRM} s (a day)")
    if "jump" in d and d["jump"] is not True:
        raise BundleError("bad_manifest", "jump must be true when present")
    _name("app name", d.get("app"))
    _name("version", d.get("ver"))
    check_version(d.get("agent"))
    t = d.get("targets")
    if not isinstance(t, list) or not 0 < len(t) <= MAX_TARGETS:
        raise BundleError("bad_manifest", f"1..{MAX_TARGETS} target board kinds")
    for k in t:
        _name("target", k)
    files, remove = d.get("files"), d.get("remove", [])
    if not isinstance(files, list) or not isinstance(remove, list):
        raise BundleError("bad_manifest", "files and remove must be lists")
    if not files or len(files) > MAX_FILES or len(remove) > MAX_REMOVE:
        raise BundleError("too_many_files",
                          f"{len(files)} files (1..{MAX_FILES}), {len(remove)} to remove "
                          f"(max {MAX_REMOVE})")
    total = 0
    seen: set[str] = set()
    dirs: set[str] = set()
    for f in files:
        if not isinstance(f, list) or len(f) != 3:
            raise BundleError("bad_manifest", "a file entry is not [path, size, sha256]")
        p, n, h = f
        check_path(p)
        if not _is_int(n) or not isinstance(h, str) or len(h) != 64:
            raise BundleError("bad_manifest", f"size or sha256 of {printable(p)} malformed")
        if not set(h) <= _HEX:
            raise BundleError("bad_manifest", f"sha256 of {printable(p)} is not lowercase hex")
        if n > MAX_FILE:
            raise BundleError("too_large", f"{p} is {n} B (max {MAX_FILE})")
        total += n
        if p in seen:
            raise BundleError("dup_path", p)
        seen.add(p)
        parts = p.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for p in remove:
        check_path(p)
        if p in seen:
            raise BundleError("dup_path", f"{p} is both shipped and removed")
    if seen & dirs:
        raise BundleError("bad_path", f"{sorted(seen & dirs)[0]} is both a file and a folder")
    if total > MAX_TOTAL:
        raise BundleError("too_large", f"{total} B of files (max {MAX_TOTAL})")
    return total


def parse_json(raw: bytes) -> Any:
    """The signed JSON text, parsed as the board parses it: shape first (guard.jws.shape), no
    member twice, no NaN/Infinity; BundleError('bad_manifest') otherwise, never a crash."""
    from ..jose import json_shape

    members = json_shape(raw, JSON_DEPTH)
    if members < 0:
        raise BundleError("bad_manifest", "not ASCII JSON of the manifest's shape (nesting, "
                          "control characters)")

    def no_constants(c: str) -> Any:
        raise BundleError("bad_manifest", f"{c} is not JSON")

    def no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise BundleError("bad_manifest", "a member appears twice")
        return d

    try:
        d = json.loads(raw, parse_constant=no_constants, object_pairs_hook=no_dups)
    except (ValueError, RecursionError, MemoryError):
        raise BundleError("bad_manifest", "not valid JSON") from None
    if not isinstance(d, dict) or len(d) != members:
        raise BundleError("bad_manifest", "not a JSON object")
    return d


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
    jump: bool = False
    fmt: int = FORMAT

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Strict: the board's field rules (check_fields); BundleError, never a crash."""
        check_fields(d)
        return cls(
            seq=d["seq"], iat=d["iat"], exp=d.get("exp"), confirm=d.get("confirm"),
            app=d["app"], ver=d["ver"], agent=d["agent"], targets=list(d["targets"]),
            files=[FileEntry(p, n, h) for p, n, h in d["files"]],
            remove=list(d.get("remove", [])), jump=d.get("jump") is True,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse signed JSON as the board does (parse_json), then from_dict."""
        return cls.from_dict(parse_json(raw))

    def validate(self) -> None:
        """The board's rules (again, on the object as it is now) and a builder's own:
        an expiry must be after the issue time."""
        check_fields(self.to_dict())
        if self.exp is not None and self.exp <= self.iat:
            raise BundleError("expired", "expiry is not after the issue time")

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
        if self.jump:
            m["jump"] = True
        return m

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()
