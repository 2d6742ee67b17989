"""The board link's file operations (a part of `mpguard.link.BoardLink`).

Every one is mpremote's own file operation (no code of mpguard's runs on the board) but
`put` and `root_fs`, each run as one link operation: watched for a board reset, bounded by a
deadline (mpguard.watch). `put` writes as mpremote's fs_writefile does (open, one `write` per chunk,
close) with two changes: chunks of PUT_CHUNK bytes, not 256, and each chunk sent as the
shortest of Python's bytes literal (mpremote's form: about 1.05x of text, 2.5x of an .mpy),
base64 decoded on the board by binascii.a2b_base64 (1.33x) and, on a board with MicroPython's
`deflate` module, base64 of the chunk as a raw deflate stream of its own (a 2**xfer.WBITS-byte
window, as the agent's compressed transfers), inflated on the board and checked for its
length (docs/decisions/0028-put-base64-chunks.md).
`root_fs` sends one line of its own: the class name of what MicroPython's `vfs.mount()` (no
arguments: the list of mounts) has at "/", so that `agent install` can refuse a FAT board
(docs/decisions/0030-fat-root-refused.md).
Errors: a missing file or a full flash is DeviceError (with `errno` when the board gave
one); a link that fails is BoardNotAnswering, BoardReset or LinkDeadline.
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import re
from collections.abc import Callable, Iterator
from typing import Any

from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from .errors import BoardNotAnswering, DeviceError, LinkDeadline
from .unixport import parse_traceback
from .xfer import WBITS, deflate

MIN_RATE = 500  # B/s: the slowest link an operation's deadline allows for (9600 baud is ~960)
_DIR = 0x4000
PUT_CHUNK = 1024  # bytes per `write` of put: its text (at most 1.4 KB) is compiled on the board
_ERRNO = re.compile(r"\[Errno (\d+)\]|OSError: (\d+)$")


# put's first exec: mpremote's open and the base64 decoder; it says whether the inflater is
# defined already (the REPL keeps it until the next soft reset).
_PUT_OPEN = "from binascii import a2b_base64 as d\nf=open(%r,'wb')\nw=f.write\nprint('_mpg_z' in globals())"
# The inflater, sent once per REPL session where the board has `deflate` ("Z" printed): a
# chunk's own raw deflate stream -> its bytes, or ValueError when they are not the `n` bytes the
# host compressed.
_PUT_INFLATER = """from io import BytesIO as B
try:
 from deflate import DeflateIO as D,RAW
 def _mpg_z(b,n):
  r=D(B(b),RAW,%d).read()
  if len(r)!=n:raise ValueError('inflate')
  return r
 print('Z')
except ImportError:
 pass"""


# root_fs: the class name of what is mounted at "/" ('VfsLfs2', 'VfsFat'; nothing printed when
# nothing is). vfs.mount() with no arguments lists the mounts: [(vfs object, mount point), ...].
_ROOT_FS = "import vfs\nprint(*[type(v).__name__ for v,p in vfs.mount() if p=='/'])"
_FS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# what a MicroPython that cannot say raises: no `vfs` module (ImportError), a vfs.mount() that
# needs its arguments (TypeError), a `vfs` without mount() (AttributeError)
_CANNOT_SAY = ("ImportError", "TypeError", "AttributeError")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _chunk_code(chunk: bytes, inflate: bool = False) -> str:
    """One chunk's `write` call: the shortest of its bytes literal, its base64 text and, when
    the board can `inflate`, the base64 text of its raw deflate stream."""
    lit = repr(chunk)
    b64 = _b64(chunk)
    code = f"w({lit})" if len(lit) <= len(b64) + 3 else f"w(d('{b64}'))"
    if inflate and chunk:
        zipped = f"w(_mpg_z(d('{_b64(deflate(chunk))}'),{len(chunk)}))"
        if len(zipped) < len(code):
            return zipped
    return code


class FileOps:
    """Mixin of BoardLink: needs its `port`, `timeout` and `_op(what, seconds)`."""

    port: str
    timeout: float
    _no_inflate = False  # the board said it has no `deflate` (its firmware's: kept per link)

    def _op(self, what: str, seconds: float) -> contextlib.AbstractContextManager[SerialTransport]:
        raise NotImplementedError  # BoardLink's

    def put(self, data: bytes, remote: str, progress: Callable[[int, int], None] | None = None) -> None:
        data = bytes(data)

        def op(t: SerialTransport) -> None:
            inflate = t.exec(_PUT_OPEN % (remote,)).strip() == b"True"
            if not inflate and not self._no_inflate:
                inflate = t.exec(_PUT_INFLATER % WBITS).strip() == b"Z"
                self._no_inflate = not inflate
            for at in range(0, len(data), PUT_CHUNK):
                t.exec(_chunk_code(data[at:at + PUT_CHUNK], inflate))
                if progress:
                    progress(min(at + PUT_CHUNK, len(data)), len(data))
            t.exec("f.close()")

        self._fs(op, remote, len(data) * 3 // 2)  # base64 at most: 4/3, and the calls around it

    def get(self, remote: str) -> bytes:
        """The file's bytes, within the link's timeout; a file too large for it on a slow
        link is read again with time for its bytes, as `put` is given: its size from a stat,
        each byte at most 4 characters of a bytes literal (mpremote's fs_readfile: eval of
        read(256) chunks). (Not a stat every time: one more command on the board moved which
        of the .py agent's secret commands fit its heap, tests/e2e/test_rotate_py_agent.py.)"""
        try:
            return bytes(self._fs(lambda t: t.fs_readfile(remote), remote))
        except LinkDeadline:  # the link reconnects (interrupting the read) before the stat
            size = self._fs(lambda t: t.fs_stat(remote), remote).st_size
            return bytes(self._fs(lambda t: t.fs_readfile(remote), remote, size * 4))

    def listdir(self, path: str = "/") -> list[str]:
        return [e.name for e in self._fs(lambda t: t.fs_listdir(path), path)]

    def exists(self, path: str) -> bool:
        return bool(self._fs(lambda t: t.fs_exists(path), path))

    def sha256(self, path: str) -> str | None:
        """SHA-256 (hex) of a file on the board, hashed there (mpremote's own fs_hashfile);
        None when there is no such file. Needs no agent."""
        if not self.exists(path):
            return None
        return bytes(self._fs(lambda t: t.fs_hashfile(path, "sha256"), path)).hex()

    def root_fs(self) -> str | None:
        """The class name of the filesystem mounted at "/": 'VfsLfs2' (littlefs v2), 'VfsFat',
        ...; None when the board's MicroPython cannot say (no `vfs` module, or a vfs.mount()
        without its no-argument form: older releases) or nothing is mounted there. Needs no
        agent; changes nothing on the board."""
        try:
            out = self._fs(lambda t: t.exec(_ROOT_FS), "/")
        except DeviceError as e:
            if e.exc_type in _CANNOT_SAY:
                return None
            raise
        name = bytes(out).decode("ascii", "replace").strip()
        return name if _FS_NAME.match(name) else None

    def remove(self, path: str) -> None:
        self._fs(lambda t: t.fs_rmfile(path), path)

    def mkdir(self, path: str, exist_ok: bool = True) -> None:
        """Create `path` and its parents. `exist_ok=False`: an existing `path` is DeviceError
        with `errno` EEXIST (17), as the board's own file errors."""
        parts = [p for p in path.split("/") if p]
        cur = ""
        for p in parts:
            cur += "/" + p
            if not self.exists(cur):
                self._fs(lambda t, c=cur: t.fs_mkdir(c), cur)
            elif not exist_ok and cur == "/" + "/".join(parts):
                err = DeviceError(f"{cur}: [Errno {errno.EEXIST}] EEXIST", "OSError")
                err.errno = errno.EEXIST  # type: ignore[attr-defined]
                raise err

    def _walk(self, path: str) -> Iterator[tuple[str, bool]]:
        """(path, is_dir) of everything under `path`, children before their folder."""
        for e in self._fs(lambda t: t.fs_listdir(path), path):
            p = path.rstrip("/") + "/" + e.name
            if e.st_mode & _DIR:
                yield from self._walk(p)
                yield p, True
            else:
                yield p, False

    def rmtree(self, path: str) -> list[str]:
        """Remove the folder `path` and everything in it (nothing when it is absent); return
        the files removed."""
        if not self.exists(path):
            return []
        removed = []
        for p, is_dir in self._walk(path):
            self._fs((lambda t, q=p: t.fs_rmdir(q)) if is_dir else (lambda t, q=p: t.fs_rmfile(q)), p)
            if not is_dir:
                removed.append(p)
        self._fs(lambda t: t.fs_rmdir(path), path)
        return removed

    def wipe(self, keep: tuple[str, ...] = ()) -> list[str]:
        """Empty the board's filesystem, as a freshly flashed board (the HIL fixtures'
        factory reset for a real board, so tests do not depend on each other); return the
        files removed. Paths in `keep` (and the folders on their way) stay. The caller
        soft-resets afterwards if code of the removed files may still be loaded. A path in
        `keep` is absolute ("/main.py"): a relative one is ValueError, before anything is
        removed."""
        relative = [k for k in keep if not k.startswith("/")]
        if relative:
            raise ValueError(f"wipe: keep paths must be absolute (\"/{relative[0]}\"): "
                             f"{', '.join(map(repr, relative))}")
        kept = {k.rstrip("/") for k in keep}
        on_way = {"/".join(k.split("/")[:i]) for k in kept for i in range(2, k.count("/") + 1)}
        removed = []
        for p, is_dir in self._walk("/"):
            if p in kept or p in on_way or any(p.startswith(k + "/") for k in kept):
                continue
            self._fs((lambda t, q=p: t.fs_rmdir(q)) if is_dir else (lambda t, q=p: t.fs_rmfile(q)), p)
            if not is_dir:
                removed.append(p)
        return removed

    def _fs(self, op: Callable[[SerialTransport], Any], path: str, size: int = 0) -> Any:
        try:
            with self._op(f"a file operation on {path}", self.timeout + size / MIN_RATE) as t:
                return op(t)
        except TransportExecError as e:
            exc_type, msg = parse_traceback(e.error_output)
            err = DeviceError(f"{path}: {exc_type}: {msg}", exc_type, e.error_output)
            m = _ERRNO.search(e.error_output.strip().splitlines()[-1]) if exc_type == "OSError" else None
            if m:  # put's own code (mpremote's operations give a local OSError, below)
                err.errno = int(m.group(1) or m.group(2))  # type: ignore[attr-defined]
            raise err from None
        except TransportError as e:
            raise BoardNotAnswering(f"board on {self.port} stopped answering: {e}") from None
        except OSError as e:  # mpremote turns a device OSError into a local one
            err = DeviceError(f"{path}: {e.strerror or e}", "OSError", str(e))
            err.errno = e.errno  # type: ignore[attr-defined]
            raise err from None
