# guard.manifest: the update manifest's field rules, checked once its signature holds
# (guard.bundle reads and verifies it; docs/bundle-format.md). The host applies the same rules
# (mpguard.updates.manifest; tests/agent/test_manifest_rules.py runs one table through both).
# Loaded only after guard.bundle has unloaded the crypto modules: the two are never on the
# heap together.
#
# check(m), the fields (bad_manifest, too_many_files, too_large, bad_path, reserved_path,
# dup_path):
#  - integers (seq, iat, exp, confirm, file sizes) are JSON integers in [0, 2**53), never
#    booleans (nor floats: 1.0 is not 1); fmt is the integer 1; seq >= 1; confirm <= a day;
#    "jump", when present, is exactly true;
#  - app, ver and targets are 1..32 printable ASCII characters; 1..8 targets;
#  - agent is 1 to 4 dot-separated parts of 1 to 9 ASCII digits;
#  - files: 1..32 [path, size, sha256] with 64 lowercase hex digits; a file at most 1 MiB,
#    all at most 2 MiB; remove: at most 32 paths (no effect: nothing is carried over);
#  - paths: relative, safe characters, no empty or dot-leading part, 64 characters, 4 parts,
#    never a name that shadows the agent, no duplicates, no path both a file and a folder.
# check_context(m, want, length, kind, st, now), against the board: wrong_target, rollback,
# replay, seq_jump, future_iat, expired, agent_too_old, bad_length.
# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import VERSION, GuardError

FORMAT = const(1)
_MAX_FILES = const(32)
_MAX_REMOVE = const(32)
_MAX_PATH = const(64)
_MAX_DEPTH = const(4)
_MAX_FILE = const(1048576)
_MAX_TOTAL = const(2097152)
_MAX_NAME = const(32)  # app name, version and target strings
_MAX_TARGETS = const(8)
_MAX_INT = const(9007199254740992)  # 2**53: every integer field is below it
_MAX_CONFIRM = const(86400)  # seconds of healthy time: a day (a timer's ms stay < 2**31)
_MAX_JUMP = const(1048576)  # sequence numbers a release may skip without "jump": true
_MAX_AHEAD = const(315576000)  # seconds (10 years) an iat may be past the newest time known
_T2024 = const(1704067200)  # 2024-01-01: a board's clock reading earlier is not set
_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"  # (tests/host/test_bundle.py reads this line)
_DIGITS = const("0123456789")
_HEX = const("0123456789abcdef")
# Names an app may not use at its top or under lib/: they would shadow the agent on sys.path
# (a package folder or a module file).
_RESERVED = ("guard", "guard.py", "guard.mpy", "_simhw", "_simhw.py", "_simhw.mpy")


def _version(v):
    # "1.2.3" -> (1, 2, 3): 1 to 4 parts of 1 to 9 ASCII digits; else a bad manifest.
    if not isinstance(v, str):
        raise GuardError("bad_manifest", "version")
    t = v.split(".")
    if len(t) > 4:
        raise GuardError("bad_manifest", "version")
    for x in t:
        if not 0 < len(x) <= 9:
            raise GuardError("bad_manifest", "version")
        for c in x:
            if c not in _DIGITS:
                raise GuardError("bad_manifest", "version")
    return tuple(map(int, t))


def _is_int(v):
    # a JSON integer in [0, 2**53); never a bool (json gives True/False for true/false)
    return type(v) is int and 0 <= v < _MAX_INT


def _str(v, what):
    # app, version, target: 1.._MAX_NAME printable ASCII characters
    if not isinstance(v, str) or not 0 < len(v) <= _MAX_NAME:
        raise GuardError("bad_manifest", what)
    for c in v:
        if not " " <= c <= "~":
            raise GuardError("bad_manifest", what)


def check(m):
    # Every field's type and range; returns the files' total size.
    if type(m.get("fmt")) is not int or m["fmt"] != FORMAT:
        raise GuardError("bad_manifest", "fmt")
    for k in ("seq", "iat"):
        if not _is_int(m.get(k)):
            raise GuardError("bad_manifest", k)
    for k in ("exp", "confirm"):
        if k in m and not _is_int(m[k]):
            raise GuardError("bad_manifest", k)
    if m["seq"] < 1:
        raise GuardError("bad_manifest", "seq")
    if m.get("confirm", 0) > _MAX_CONFIRM:
        raise GuardError("bad_manifest", "confirm")
    if "jump" in m and m["jump"] is not True:
        raise GuardError("bad_manifest", "jump")
    _str(m.get("app"), "app")
    _str(m.get("ver"), "ver")
    _version(m.get("agent"))
    t = m.get("targets")
    if not isinstance(t, list) or not 0 < len(t) <= _MAX_TARGETS:
        raise GuardError("bad_manifest", "targets")
    for k in t:
        _str(k, "targets")
    files = m.get("files")
    rm = m.get("remove", [])
    if not isinstance(files, list) or not isinstance(rm, list):
        raise GuardError("bad_manifest", "files")
    if not files or len(files) > _MAX_FILES or len(rm) > _MAX_REMOVE:
        raise GuardError("too_many_files")
    total = 0
    seen = set()
    dirs = set()
    for f in files:
        if not isinstance(f, list) or len(f) != 3:
            raise GuardError("bad_manifest", "file")
        p, n, h = f
        check_path(p)
        if not _is_int(n) or not isinstance(h, str) or len(h) != 64:
            raise GuardError("bad_manifest", "file")
        for c in h:
            if c not in _HEX:
                raise GuardError("bad_manifest", "sha256")
        if n > _MAX_FILE:
            raise GuardError("too_large", p)
        total += n
        if p in seen:
            raise GuardError("dup_path", p)
        seen.add(p)
        i = p.find("/")
        while i > 0:
            dirs.add(p[:i])
            i = p.find("/", i + 1)
    for p in rm:
        check_path(p)
        if p in seen:
            raise GuardError("dup_path", p)
    for p in seen:
        if p in dirs:
            raise GuardError("bad_path", p)  # both a file and a folder
    if total > _MAX_TOTAL:
        raise GuardError("too_large", "total")
    return total


def check_path(p):
    # Relative, '/'-separated, safe characters, no empty/dot-leading part (so no '..',
    # no hidden files), bounded length and depth, never a name that shadows the agent.
    if not isinstance(p, str) or not 0 < len(p) <= _MAX_PATH:
        raise GuardError("bad_path")
    parts = p.split("/")
    if len(parts) > _MAX_DEPTH:
        raise GuardError("bad_path", p)
    for s in parts:
        if not s or s[0] == ".":
            raise GuardError("bad_path", p)
        for c in s:
            if c not in _SAFE:
                raise GuardError("bad_path", p)
    top = parts[1] if parts[0] == "lib" and len(parts) > 1 else parts[0]
    if top in _RESERVED:
        raise GuardError("reserved_path", p)


def check_context(m, want, length, kind, st, now):
    # Against the board: target, anti-rollback against the highest sequence the
    # board has accepted (a trial raises it too), sequence jump, issue time, expiry, agent
    # version, stream length. `now`: seconds since 1970, None while the clock is not set.
    if kind not in m["targets"]:
        raise GuardError("wrong_target", kind)
    hi = st["hi"]
    if m["seq"] < hi:
        raise GuardError("rollback")
    if m["seq"] == hi:
        raise GuardError("replay")
    if m["seq"] - hi > _MAX_JUMP and m.get("jump") is not True:
        raise GuardError("seq_jump", m["seq"] - hi)
    # The newest time the board knows: its clock when set, else the newest iat it has
    # confirmed (the floor), never before 2024. An iat absurdly ahead of it is a signer's
    # clock or typo: once confirmed it would make every later expiring bundle look expired.
    known = max(st["floor"], _T2024, now or 0)
    if m["iat"] > known + _MAX_AHEAD:
        raise GuardError("future_iat")
    exp = m.get("exp")
    if exp is not None:
        # Board time may be unknown (no RTC, no network time): `now` is None then, and the
        # board still refuses anything that expired before a time it has proof of (floor:
        # the newest `iat` of a confirmed manifest). docs/decisions/0005-bundle.md.
        t = st["floor"] if now is None else max(now, st["floor"])
        if exp <= t:
            raise GuardError("expired")
    if _version(VERSION) < _version(m["agent"]):
        raise GuardError("agent_too_old", m["agent"])
    if length != want:  # header + manifest + the files' sizes
        raise GuardError("bad_length")
