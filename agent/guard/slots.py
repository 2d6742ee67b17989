# guard.slots: the app slots on the board's filesystem, for guard.install (loaded after the
# signature check, when the crypto modules are gone). docs/decisions/0006-install.md.
#
# /app/a, /app/b, /app/c: the state file (guard.state) names the confirmed slot and the trial
# slot; the third is free. write() puts a verified release into the free slot:
#  1. room: statvfs free blocks plus what slots nothing refers to hold must take the files,
#     the manifest and some slack; else no_space, before anything is written
#  2. slots and stored manifests nothing refers to are removed (what a power cut or a
#     replaced trial left)
#  3. the verified manifest is stored as the token it was (/mpguard/m-<measurement[:16]>.jws,
#     re-assembled from the buffer it was decoded in, and checked against the measurement)
#  4. every file streams through the one buffer into the slot, SHA-256'd and size-checked;
#     nothing is carried over from another slot: a release is exactly what it lists
# Any failure removes the slot and the manifest again (the rest stays as it was): MemoryError
# becomes no_memory, OSError io_error; KeyboardInterrupt (the host broke off) propagates.
# Reasons: no_space bad_hash truncated io_error no_memory internal.
import hashlib
import os
from binascii import hexlify

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import GuardError

MANIFESTS = "/mpguard/m-"  # + measurement[:16] + ".jws"
SLOTS = "abc"
_B64 = const(192)  # payload bytes re-encoded at a time when the manifest is stored
_BLOCK_SLACK = const(2)  # blocks kept free for the state file and littlefs metadata
_DIR = const(0x4000)
_DU_DEPTH = const(8)  # folders deeper than this (made by an app) are not counted as free


def _stat(p):
    try:
        return os.stat(p)
    except OSError:
        return None


def _blocks(n, bs):
    return (n + bs - 1) // bs + 1


def _du(d, bs, depth=0):
    # Blocks the files under d hold; a lower bound (folders deeper than _DU_DEPTH, which only
    # an app can have made, are not counted). Iterators only, no lists.
    s = _stat(d)
    if s is None:
        return 0
    if not s[0] & _DIR:
        return _blocks(s[6], bs)
    n = 2  # the folder's own metadata pair
    if depth < _DU_DEPTH:
        for e in os.ilistdir(d):
            n += _du(d + "/" + e[0], bs, depth + 1)
    return n


def _rmtree(d):
    # Remove d (a folder or a file) and all under it, at any depth an app may have made,
    # without recursion or lists: go down to a folder with no sub-folder, empty it, repeat.
    while True:
        s = _stat(d)
        if s is None:
            return
        if not s[0] & _DIR:
            os.remove(d)
            return
        p = d
        while True:
            e = None
            for e in os.ilistdir(p):  # the first entry, if any
                break
            if e is None:
                os.rmdir(p)
                break
            q = p + "/" + e[0]
            if e[1] == _DIR:
                p = q
            else:
                os.remove(q)


def _copy(buf, dst, n, stream):
    # Stream n bytes from `stream` into file dst through buf; return the SHA-256 hex.
    import sys

    h = hashlib.sha256()
    with open(dst, "wb") as f:
        while n:
            mv = buf[: min(n, len(buf))]
            k = 0
            while k < len(mv):  # readinto may return less than asked
                r = stream.readinto(mv[k:])
                if not r:
                    raise GuardError("truncated")
                k += r
            h.update(mv)
            f.write(mv)
            n -= len(mv)
            # feed a watchdog guard.boot armed in this session (guard.hw is loaded then): an
            # install takes long enough for it to fire otherwise
            hw = sys.modules.get("guard.hw")
            if hw:
                hw.feed()
    return hexlify(h.digest()).decode()


def _store_manifest(buf, info, path):
    # Write the token guard.bundle verified, as it was: header "." base64url(payload) "."
    # signature (buf holds the payload decoded in place), and check it against the digest.
    from binascii import b2a_base64

    _, _, d1, d2, plen, _ = info
    h = hashlib.sha256()
    with open(path, "wb") as f:
        part = buf[: d1 + 1]
        h.update(part)
        f.write(part)
        i = d1 + 1
        end = i + plen
        while i < end:
            c = b2a_base64(buf[i : min(i + _B64, end)]).rstrip(b"=\n")  # (and its newline)
            c = c.replace(b"+", b"-").replace(b"/", b"_")
            h.update(c)
            f.write(c)
            i += _B64
        f.write(buf[d2 : info[1]])
    if hexlify(h.digest()).decode() != info[0]:
        raise GuardError("internal", "manifest")


def manifest_path(digest):
    return MANIFESTS + digest[:16] + ".jws"


def tidy(st, app):
    # Remove slots and stored manifests the state refers to no more (best effort: what a
    # power cut leaves here is removed by the next install).
    t = st["trial"]
    keep = (st["active"], t["slot"] if t else None)
    for s in SLOTS:
        if s not in keep:
            _rmtree(app + "/" + s)
    keep = (st["digest"], t["digest"] if t else None)
    for e in os.ilistdir("/mpguard"):
        n = e[0]
        if n.startswith("m-") and n.endswith(".jws"):
            if not any(d and n == manifest_path(d)[9:] for d in keep):
                os.remove("/mpguard/" + n)


def _unused(st):
    t = st["trial"]
    return [s for s in SLOTS if s != st["active"] and not (t and s == t["slot"])]


def write(st, app, m, info, buf, stream):
    # Steps 1-4; returns the slot written. `info` as guard.bundle.read gives it.
    free_slots = _unused(st)
    slot = free_slots[0]
    dst = app + "/" + slot
    mpath = manifest_path(info[0])
    fs = os.statvfs("/")
    bs = fs[0]
    free = fs[4]
    for s in free_slots:  # slots nothing refers to are freed before writing
        free += _du(app + "/" + s, bs)
    need = _blocks(info[1], bs) + 2 + _BLOCK_SLACK
    for f in m["files"]:
        need += _blocks(f[1], bs)
    if need > free:
        raise GuardError("no_space")
    # Genuine, new and meant for this board: from here on the free slot is ours.
    try:
        tidy(st, app)
        if _stat(app) is None:
            os.mkdir(app)
        elif not _stat(app)[0] & _DIR:
            os.remove(app)  # not the agent's: an app wrote a file there
            os.mkdir(app)
        if os.statvfs("/")[4] < need:
            raise GuardError("no_space")
        _store_manifest(buf, info, mpath)
        os.mkdir(dst)
        for p, n, h in m["files"]:
            i = p.find("/")
            while i > 0:  # the file's folders
                if _stat(dst + "/" + p[:i]) is None:
                    os.mkdir(dst + "/" + p[:i])
                i = p.find("/", i + 1)
            if _copy(buf, dst + "/" + p, n, stream) != h:
                raise GuardError("bad_hash", p)
    except BaseException as e:  # also KeyboardInterrupt: the host broke off the transfer
        buf = None
        try:
            _rmtree(dst)
            _rmtree(mpath)
        except Exception:
            pass  # garbage nothing refers to: the next install removes it
        if isinstance(e, MemoryError):
            raise GuardError("no_memory")
        if isinstance(e, OSError):
            raise GuardError("io_error")
        raise
    return slot
