"""One table of manifests, judged by the host and by the board: the same verdict from both.

Each case is a manifest's JSON text (what the release key signs) and the verdict the board's
rules give it: "ok" or the refusal reason. The host judges it with
`mpguard.updates.manifest.Manifest.from_json` (what `release build` and `release verify`
use); the board with guard.jws.shape, guard.bundle.parse and guard.manifest.check on
MicroPython (what an install runs after the signature holds). `release verify` is run on
every case too, signed by the project's key: never a traceback, one verdict, and NOT
VERIFIED whenever the board would refuse.

The top object's syntax is in the table: MicroPython's parser takes ':' and ',' for spaces,
which could hide a member given twice, so guard.jws.shape checks that object's grammar.
Out of the table on purpose (docs/decisions/0005-bundle.md, known limits): JSON syntax
*inside arrays* that MicroPython's parser is more lenient about than CPython's (a leading
zero, a missing ','); it cannot hide a member, and only a trusted signer could make it.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from mpguard import cli, jose
from mpguard.errors import BundleError
from mpguard.updates import bundle
from mpguard.updates.manifest import Manifest

H = hashlib.sha256(b"print(1)\n").hexdigest()
BASE = {"fmt": 1, "seq": 6, "targets": ["sim"], "app": "demo", "ver": "2.0", "agent": "0.1.0",
        "iat": 1_700_000_000, "files": [["main.py", 9, H]]}


def _j(**kw) -> bytes:
    m = dict(BASE)
    for k, v in kw.items():
        if v is _DROP:
            m.pop(k)
        else:
            m[k] = v
    return json.dumps(m, separators=(",", ":")).encode()


_DROP = object()


def _raw(text: str) -> bytes:
    """BASE with `text` spliced in before the closing brace (for what json.dumps won't make)."""
    base = _j()
    return base[:-1] + b"," + text.encode("latin-1") + b"}"


def _files(*entries) -> bytes:
    return _j(files=[list(e) for e in entries])


MB = 1024 * 1024
CASES: dict[str, tuple[bytes, str]] = {
    "good": (_j(), "ok"),
    "good, every optional field": (_j(exp=1_800_000_000, confirm=60, jump=True, remove=["x.py"]),
                                   "ok"),
    "unknown field (ignored by both)": (_j(zzz=[1, 2]), "ok"),
    # the JSON text (guard.jws.shape / manifest.parse_json)
    "not an object": (b"[1,2,3]", "bad_manifest"),
    "an empty list": (b"[]", "bad_manifest"),
    "a string": (b'"fmt"', "bad_manifest"),
    "an empty object": (b"{}", "bad_manifest"),
    "broken JSON": (b'{"fmt":1,', "bad_manifest"),
    "nested 200 levels in an unknown field": (_raw('"zzz":' + "[" * 200 + "]" * 200), "bad_manifest"),
    "nested 4 levels": (_raw('"zzz":[[[[1]]]]'), "bad_manifest"),
    "object inside": (_j(zzz={"a": 1}), "bad_manifest"),
    "member given twice": (_raw('"seq":7'), "bad_manifest"),
    # MicroPython's parser takes ':' and ',' for spaces and reads "truenull" as two values:
    # each of these hid a second "seq" from a count of the ':' (the board installed seq 99)
    "member given twice, its ':' left out": (_raw('"seq" 99'), "bad_manifest"),
    "member given twice, the ',' before it left out": (_j()[:-1] + b' "seq":99}',
                                                       "bad_manifest"),
    "member given twice behind a value read as three": (_raw('"x":truenullfalse,"seq":99'),
                                                        "bad_manifest"),
    "a ':' left out": (_raw('"exp" 1800000000'), "bad_manifest"),
    "a ',' left out": (_j()[:-1] + b' "exp":1800000000}', "bad_manifest"),
    "a ':' given twice": (_raw('"exp"::1800000000'), "bad_manifest"),
    "a ',' at the end": (_j()[:-1] + b",}", "bad_manifest"),
    "a ',' at the start": (b"{," + _j()[1:], "bad_manifest"),
    "two values run together": (_raw('"exp":1800000000true'), "bad_manifest"),
    "a word that is not one": (_raw('"jump":truex'), "bad_manifest"),
    "a second object after the first": (_j() + b"{}", "bad_manifest"),
    # what the grammar check lets through and the parser refuses: still bad_manifest
    "a number that is not one": (_raw('"exp":1e'), "bad_manifest"),
    "a word that is not one, in an array": (_raw('"remove":[tru]'), "bad_manifest"),
    "NaN": (_raw('"zzz":NaN'), "bad_manifest"),
    "Infinity as seq": (_j(seq=_DROP)[:-1] + b',"seq":Infinity}', "bad_manifest"),
    "raw control character in a string": (_raw('"zzz":"a\x01b"'), "bad_manifest"),
    "raw non-ASCII byte": (_raw('"zzz":"\xe9"'), "bad_manifest"),
    # fmt
    "fmt 2": (_j(fmt=2), "bad_manifest"),
    "fmt 1.0": (_j(fmt=1.0), "bad_manifest"),
    "fmt true": (_j(fmt=True), "bad_manifest"),
    "fmt missing": (_j(fmt=_DROP), "bad_manifest"),
    # integers
    "seq 0": (_j(seq=0), "bad_manifest"),
    "seq -1": (_j(seq=-1), "bad_manifest"),
    "seq 6.0": (_j(seq=6.0), "bad_manifest"),
    "seq 1e3": (_j(seq=_DROP)[:-1] + b',"seq":1e3}', "bad_manifest"),
    "seq true": (_j(seq=True), "bad_manifest"),
    "seq a string": (_j(seq="6"), "bad_manifest"),
    "seq 2**53": (_j(seq=2**53), "bad_manifest"),
    "seq 2**53 - 1": (_j(seq=2**53 - 1), "ok"),
    "iat 10**20": (_j(iat=10**20), "bad_manifest"),
    "iat missing": (_j(iat=_DROP), "bad_manifest"),
    "exp 'soon'": (_j(exp="soon"), "bad_manifest"),
    "exp null": (_j(exp=None), "bad_manifest"),
    "exp -1": (_j(exp=-1), "bad_manifest"),
    "confirm a day": (_j(confirm=86400), "ok"),
    "confirm a day and a second": (_j(confirm=86401), "bad_manifest"),
    "confirm 2**31 s": (_j(confirm=2**31), "bad_manifest"),
    "confirm true": (_j(confirm=True), "bad_manifest"),
    "jump false": (_j(jump=False), "bad_manifest"),
    "jump 1": (_j(jump=1), "bad_manifest"),
    # names: printable ASCII, 1..32
    "app empty": (_j(app=""), "bad_manifest"),
    "app 32 characters": (_j(app="a" * 32), "ok"),
    "app 33 characters": (_j(app="a" * 33), "bad_manifest"),
    "app with a newline": (_j(app="demo\n  VERIFIED"), "bad_manifest"),
    "app with an ANSI escape": (_j(app="\x1b[2Kdemo"), "bad_manifest"),
    "app with DEL": (_j(app="demo\x7f"), "bad_manifest"),
    "app with a non-ASCII letter (escaped)": (_j(app="d\u00e9mo"), "bad_manifest"),
    "app a number": (_j(app=5), "bad_manifest"),
    "app with spaces and tildes": (_j(app="my app ~1"), "ok"),
    "app with quotes and a backslash (escaped)": (_j(app='say "hi" \\ bye'), "ok"),
    "app with brackets and colons": (_j(app="[a]:{b}"), "ok"),
    "app with escaped quotes around a colon": (_j(app='a":"b'), "ok"),
    "ver with a tab": (_j(ver="1.0\t"), "bad_manifest"),
    "ver missing": (_j(ver=_DROP), "bad_manifest"),
    # agent version
    "agent 4 parts": (_j(agent="0.1.0.0"), "ok"),
    "agent 5 parts": (_j(agent="0.1.0.0.0"), "bad_manifest"),
    "agent with +": (_j(agent="+0.1.0"), "bad_manifest"),
    "agent with _": (_j(agent="0.1_0.0"), "bad_manifest"),
    "agent with a space": (_j(agent=" 0.1.0"), "bad_manifest"),
    "agent empty part": (_j(agent="0..1"), "bad_manifest"),
    "agent non-ASCII digits": (_j(agent="\u0660.\u0661.\u0660"), "bad_manifest"),
    "agent a 10-digit part": (_j(agent="1234567890.0"), "bad_manifest"),
    "agent a number": (_j(agent=1), "bad_manifest"),
    # targets
    "no targets": (_j(targets=[]), "bad_manifest"),
    "9 targets": (_j(targets=["sim"] * 9), "bad_manifest"),
    "target a number": (_j(targets=["sim", 1]), "bad_manifest"),
    "targets a string": (_j(targets="sim"), "bad_manifest"),
    "target empty": (_j(targets=[""]), "bad_manifest"),
    # files
    "no files": (_j(files=[]), "too_many_files"),
    "33 files": (_j(files=[[f"f{i}.py", 0, H] for i in range(33)]), "too_many_files"),
    "32 files": (_j(files=[[f"f{i}.py", 0, H] for i in range(32)]), "ok"),
    "files not a list": (_j(files={"main.py": 9}), "bad_manifest"),
    "file entry of 2": (_files(["main.py", 9]), "bad_manifest"),
    "file entry of 4": (_files(["main.py", 9, H, 1]), "bad_manifest"),
    "file size true": (_files(["main.py", True, H]), "bad_manifest"),
    "file size 9.0": (_files(["main.py", 9.0, H]), "bad_manifest"),
    "file size -1": (_files(["main.py", -1, H]), "bad_manifest"),
    "sha256 upper case": (_files(["main.py", 9, H.upper()]), "bad_manifest"),
    "sha256 with 0x": (_files(["main.py", 9, "0x" + H[:62]]), "bad_manifest"),
    "sha256 63 digits": (_files(["main.py", 9, H[:63]]), "bad_manifest"),
    "sha256 with a sign": (_files(["main.py", 9, "-" + H[1:]]), "bad_manifest"),
    "path ..": (_files(["../x.py", 1, H]), "bad_path"),
    "path a number": (_files([5, 1, H]), "bad_path"),
    "path with a control character (escaped)": (_files(["a\x01.py", 1, H]), "bad_path"),
    "path shadows the agent in lib": (_files(["lib/guard.mpy", 1, H]), "reserved_path"),
    "path is the sim's hw package": (_files(["_simhw/__init__.py", 1, H]), "reserved_path"),
    "path is the sim's hw package in lib": (_files(["lib/_simhw/x.py", 1, H]), "reserved_path"),
    "path given twice": (_files(["a.py", 1, H], ["a.py", 1, H]), "dup_path"),
    "path both a file and a folder": (_files(["a", 1, H], ["a/b.py", 1, H]), "bad_path"),
    "one file over the per-file limit": (_files(["a.bin", MB + 1, H]), "too_large"),
    "a file at the per-file limit": (_files(["a.bin", MB, H]), "ok"),
    "files over the total limit, each within": (
        _files(["a.bin", MB, H], ["b.bin", MB, H], ["c.bin", 1, H]), "too_large"),
    "files at the total limit": (_files(["a.bin", MB, H], ["b.bin", MB, H]), "ok"),
    # remove (no effect, still checked)
    "remove 33 paths": (_j(remove=[f"f{i}.py" for i in range(33)]), "too_many_files"),
    "remove a shipped file": (_j(remove=["main.py"]), "dup_path"),
    "remove an absolute path": (_j(remove=["/mpguard/state.json"]), "bad_path"),
    "remove not a list": (_j(remove="x.py"), "bad_manifest"),
}

BOARD = """
import sys, binascii
from guard import GuardError, bundle, jws, manifest
while True:
    line = sys.stdin.readline()
    if not line:
        break
    pl = binascii.unhexlify(line.strip())
    buf = memoryview(bytearray(b"." + pl))  # as guard.bundle.read leaves it: "." then JSON
    try:
        k = jws.shape(buf[1:], 3)
        if k < 0:
            raise GuardError("bad_manifest", "json")
        manifest.check(bundle.parse(buf, [None, None, 0, None, len(pl), k]))
        OUT("ok")
    except GuardError as e:
        OUT(e.args[0])
"""


def _host(raw: bytes) -> str:
    try:
        Manifest.from_json(raw)
        return "ok"
    except BundleError as e:
        return e.reason


def test_host_and_board_judge_every_manifest_the_same(mp, agent_mpy):
    names = list(CASES)
    stdin = "".join(CASES[n][0].hex() + "\n" for n in names).encode()
    board = mp.run(BOARD, stdin=stdin, path=[agent_mpy]).outputs
    want = {n: CASES[n][1] for n in names}
    got_board = dict(zip(names, board, strict=True))
    got_host = {n: _host(CASES[n][0]) for n in names}
    assert got_board == want
    assert got_host == want
    print(f"\n{len(names)} manifests: host and board agree on each")


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.setenv("MPGUARD_PASSPHRASE", "a passphrase nobody guesses")
    root = tmp_path / "proj"
    assert cli.main(["init", str(root), "--target", "sim", "--no-passphrase"]) == 0
    monkeypatch.chdir(root)
    from mpguard import project

    return project.find(str(root))


def test_release_verify_never_crashes_and_never_says_verified_when_the_board_refuses(
        proj, capsys):
    key = proj.release_key(None)
    capsys.readouterr()
    for name, (raw, verdict) in CASES.items():
        (proj.root / "b.bundle").write_bytes(bundle.assemble(jose.sign(raw, key), [b"print(1)\n"]))
        rc = cli.main(["release", "verify", "b.bundle"])
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err, name
        assert "\x1b" not in out.out and "\r" not in out.out, name
        last = out.out.splitlines()[-1]
        assert last in ("  VERIFIED", "  NOT VERIFIED"), (name, out.out)
        if verdict != "ok":
            assert rc == 4 and last == "  NOT VERIFIED", (name, out.out)
            assert f"problem: " in out.out, name
        assert [ln for ln in out.out.splitlines() if ln.strip() == "VERIFIED"] == (
            ["  VERIFIED"] if rc == 0 else []), name


# -- the top object's grammar, against CPython's strict parser ------------------------------

SHAPE_LINES = """
import sys, json, binascii
from guard import jws
while True:
    line = sys.stdin.readline()
    if not line:
        break
    t = binascii.unhexlify(line.strip())
    k = jws.shape(t, 3)
    m = None
    if k >= 0:
        try:
            m = json.loads(t)
        except ValueError:
            pass
    # what a caller takes: an object with as many members as shape counted
    OUT(m if isinstance(m, dict) and len(m) == k else None)
"""

# fragments that MicroPython and CPython read alike one by one; run together without
# separators, MicroPython's parser (':' and ',' are spaces to it, "truenull" two values)
# and CPython's part ways. No number fragment starts with 0 (a leading zero is the known
# limit of the module docstring), none holds '.' or 'e' (floats print differently).
_FRAGS = ['"a"', '"seq"', '"b"', '"\\u0062"', ":", ",", ":", ",", "1", "-3", "25", "true",
          "false", "null", " ", "\n", "[]", "[1]", "[1,[2]]", '["x"]', "[[[1]]]", "{", "}"]


def _texts(n: int, seed: int = 13) -> list[bytes]:
    import random

    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        body = "".join(rnd.choice(_FRAGS) for _ in range(rnd.randint(0, 9)))
        out.append(("{" + body + "}").encode())
        # near-valid ones too: a valid object with one fragment dropped or doubled
        good = ['"a"', ":", "1", ",", '"seq"', ":", "true", ",", '"b"', ":", "[1]"]
        i = rnd.randrange(len(good))
        out.append(("{" + "".join(good[:i] + good[i + 1:]) + "}").encode())
        out.append(("{" + "".join(good[:i] + [rnd.choice(_FRAGS)] + good[i:]) + "}").encode())
        out.append(("{" + "".join(good[:i] + [rnd.choice(" \n\t")] + good[i:]) + "}").encode())
    return out


def _strict(raw: bytes):
    from mpguard.updates.manifest import parse_json

    try:
        return parse_json(raw)
    except BundleError:
        return None


def test_board_takes_an_object_only_where_a_strict_parser_reads_the_same(mp, agent_mpy):
    # the duplicate check's ground: whatever the board takes (shape's count = the parsed
    # dict's length), CPython's strict parser (the host's, members given twice refused)
    # takes too, as the same object; and what it refuses, the board refuses
    texts = _texts(1500)
    stdin = "".join(t.hex() + "\n" for t in texts).encode()
    board = mp.run(SHAPE_LINES, stdin=stdin, path=[agent_mpy]).outputs
    differ = [(t, b, _strict(t)) for t, b in zip(texts, board, strict=True) if b != _strict(t)]
    assert not differ, differ[:5]
    taken = sum(b is not None for b in board)
    assert taken > 100 and len(texts) - taken > 100  # both verdicts well represented
    print(f"\n{len(texts)} texts: {taken} taken, {len(texts) - taken} refused, alike on both")
