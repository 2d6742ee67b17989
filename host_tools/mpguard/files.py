"""Plumbing every host module shares: atomic file writes and base64url.

A leaf module: it imports nothing of mpguard.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pybase64


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                 overwrite: bool = True) -> Path:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never half.

    The bytes go to a new temporary file beside `path` (created with O_EXCL under a random
    name, so a planted file or symlink is never written through), with `mode` from the start,
    flushed to disk, then renamed over `path` (a symlink at `path` is replaced, not followed).
    `overwrite=False` refuses an existing `path` (FileExistsError).
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; the umask plays no part either way
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not overwrite:
            os.link(tmp, path)  # atomic "create only if absent"
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike[str], data: Any, *, mode: int = 0o644) -> Path:
    """Atomically write `data` as indented, key-sorted JSON with a final newline."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, text.encode(), mode=mode)


def b64u_enc(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5, RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode("ascii")


_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# base64url's alphabet to the standard one in one pass; "+", "/" and "=" (not base64url)
# become "!", which the strict decoder refuses like any other character outside the alphabet
_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
_VALUE = bytes(_STD.index(c) if c in _STD else 0 for c in range(256))
_PAD = (b"", b"", b"==", b"=")


def b64u_dec(text: str | bytes) -> bytes:
    """Strict base64url without padding: alphabet, length and canonical trailing bits.

    Raises ValueError for anything else (a non-canonical last character included).
    """
    if isinstance(text, str):
        raw = text.encode("ascii", "replace")
    elif isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
    else:  # bytes(n) of an integer n (a JSON value) would be n zero bytes
        raise ValueError("not base64url")
    n = len(raw) & 3
    if n == 1:
        raise ValueError("not base64url")
    std = raw.translate(_TO_STD)
    # validate: only the alphabet, padding only at the end (no spaces, no newlines); pybase64
    # decodes a token's 2.9 KB about five times faster than binascii (docs/decisions/0032)
    try:
        out = pybase64.b64decode(std + _PAD[n], None, True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    # canonical: the last character's bits beyond the data are zero (RFC 4648 3.5)
    if n and _VALUE[std[-1]] & (0x0F if n == 2 else 0x03):
        raise ValueError("non-canonical base64url")
    return out


def remember(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """cache[key] = value in a memory of at most `limit` entries, the oldest let go first.

    Safe when threads share the memory (a production line's stations verify in threads): one
    that finds the oldest entry gone already, or the memory changing under its look, looks
    again, so the memory never keeps more than `limit` entries plus one per thread inserting
    at that moment."""
    while len(cache) >= limit:
        try:
            del cache[next(iter(cache))]
        except StopIteration:
            break
        except (KeyError, RuntimeError):
            continue
    cache[key] = value
