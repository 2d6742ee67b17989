"""guard.attest and guard.posture on MicroPython: the token a board signs, checked on the host
with independent JOSE libraries (PyJWT, jwcrypto) and against RFC 9711's claim types.

The board is a littlefs2 image (a file-backed block device mounted at `/`) holding what a
board holds: the compiled agent in /lib/guard (imported from there, lazily, as on a board),
its board profile and digests.json as `mpguard agent install` writes them, the trust anchors,
a confirmed app in /app/a with its manifest, the update state. eFuse words come from real
`espefuse --virt` files through a machine stand-in (the chip path of guard.hw), or through a
`_simhw`-like object (the virtual board's path) where a test needs REPL or Wi-Fi facts.
(Over 300 lines: the board harness and the tables of claims and refusals it runs belong together.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto import jwk
from jwcrypto import jws as jcjws

from mpguard import boards, efuse, jose, keys, project
from mpguard.agent import install as agentinstall
from mpguard.agent import package as agentpkg
from mpguard.errors import DeviceError
from mpguard.updates import bundle

ESPEFUSE = str(Path(sys.executable).parent / "espefuse")
BLOCKS = 96
# Fixed test keys (committed on purpose: the board's identity stand-in and a release key).
TEST_D = 0x51C4A3F0E1D2C3B4A5968778695A4B3C2D1E0F1F2E3D4C5B6A79880A1B2C3D4E
KEY = ec.derive_private_key(TEST_D, ec.SECP256R1())
PUB = keys.public_bytes(KEY)
KID = jose.thumbprint(KEY)
UEID = bytes.fromhex("02240ac4a1b2c3")  # EUI-48 type byte + the board's MAC
NONCE = "bm9uY2Utb2YtdGhlLWhvc3QtMDAx"

SETUP = """
import os
class Flash:
    def __init__(self, f, n):
        self.f = f
        self.n = n
    def readblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, b, buf, off=0):
        self.f.seek(b * 4096 + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            for i in range(8):
                self.f.write(b"\\xff" * 512)
        return 0
fl = Flash(open(IN["flash"], "r+b"), IN["blocks"])
"""
MKFS = SETUP + """
import binascii
os.VfsLfs2.mkfs(fl)
os.umount("/")
os.mount(os.VfsLfs2(fl), "/")
for p, h in IN["files"].items():
    d = ""
    for part in p.split("/")[1:-1]:
        d += "/" + part
        try:
            os.mkdir(d)
        except OSError:
            pass
    with open(p, "wb") as f:
        f.write(binascii.unhexlify(h))
OUT(1)
"""
# A run on the board: flash mounted at /, the agent imported from /lib, hardware stand-ins.
RUN = SETUP + """
import sys
os.umount("/")
os.mount(os.VfsLfs2(fl), "/")
os.chdir("/")
sys.path[:] = ["/lib"]
import guard.hw as hw
class Mem:
    def __init__(self, w):
        self.w = w
    def __getitem__(self, a):
        return self.w.get(a, 0)
class Machine:
    def __init__(self, w):
        self.mem32 = Mem(w)
    def reset_cause(self):
        return 2
class Sim:
    def __init__(self, w, net, repl):
        self.w, self.n, self.r = w, net, repl
    def board(self):  # read when asked (guard.hw keeps what it needs): no second copy held
        with open("/lib/guard/board.json") as f:
            return __import__("json").load(f)
    def efuse_word(self, a):
        return self.w.get(a, 0)
    def net(self):
        return self.n
    def reset_cause(self):
        return 1
    def uptime(self):
        return 1234
    def boot_count(self):
        return 9
    def repl_uart(self):
        return self.r
    def partition_encrypted(self):
        return None
W = {int(k): v for k, v in IN["words"].items()}
if IN.get("sim"):
    hw.use(sim=Sim(W, IN.get("net"), IN.get("repl", True)))
else:
    hw.use(mach=Machine(W))
W = None
K = (IN["d"], bytes.fromhex(IN["pub"]), bytes.fromhex(IN["ueid"])) if IN.get("d") else None
IN.pop("words")
class _Out:
    # OUT(token) as it streams: the mark goes out with the first piece (a refusal has none)
    def write(self, s):
        if not self.__dict__.get("on"):
            sys.stdout.write('\\x1eOUT:"')
            self.on = True
        sys.stdout.write(s)
def EMIT(nonce, key):
    # the token streamed as mpguard.attest.board asks for it (no 3 KiB string on the heap)
    import guard.attest as A
    A.token(nonce, key, _Out())
    sys.stdout.write('"\\n')
"""


def espefuse_words(blank_chip, kind: str, *burns: str) -> dict[int, int]:
    """The eFuse words of a blank virtual chip of `kind` (blank_chip, tests/conftest.py) after
    espefuse burned `burns` on it."""
    prof = boards.load_profile(kind)
    path = blank_chip(prof["chip"])
    if burns:
        subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", prof["chip"],
                        "--do-not-confirm", "burn-efuse", *burns], check=True,
                       capture_output=True, timeout=120)
    return efuse.efuse_words(path, prof)


@pytest.fixture(scope="session")
def agent_mpy(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("attest_mpy")
    return {f"/lib/{m.source.with_suffix('.mpy')}": m.mpy.read_bytes()
            for m in agentpkg.compile_agent(out)}


def app_files() -> list[tuple[str, bytes]]:
    return [("main.py", b"print('app')\n"), ("lib/util.py", b"X = 1\n"), ("data/cfg.json", b"{}")]


class AttestBoard:
    """A board image with the agent, a confirmed app and its manifest; runs code on it."""

    def __init__(self, mp, path: Path, agent: dict[str, bytes], kind: str = "esp32",
                 app: bool = True, extra: dict[str, bytes] | None = None):
        self.mp = mp
        self.path = path
        files = dict(agent)
        files["/lib/guard/board.json"] = json.dumps(boards.load_profile(kind), sort_keys=True).encode()
        files[agentinstall.DIGESTS] = agentinstall.digests(files)
        files["/mpguard/anchors.json"] = json.dumps(project.anchor_set([PUB])).encode()
        if app:
            token, _ = bundle.split(bundle.build(app_files(), KEY, app="demo", version="1.2.0",
                                                 seq=3, targets=[kind]))
            # the measurement: SHA-256 of the signing input (as guard.install records it)
            self.manifest_digest = hashlib.sha256(token[: token.rfind(b".")]).hexdigest()
            files[f"/mpguard/m-{self.manifest_digest[:16]}.jws"] = token
            for p, d in app_files():
                files[f"/app/a/{p}"] = d
            st = {"v": 1, "active": "a", "seq": 3, "app": "demo", "ver": "1.2.0",
                  "digest": self.manifest_digest, "floor": 0, "max_boots": 3, "trial": None,
                  "last": {"result": "confirmed", "seq": 3, "app": "demo", "ver": "1.2.0"}}
            files["/mpguard/state.json"] = json.dumps(st).encode()
        files.update(extra or {})
        path.write_bytes(b"\xff" * (4096 * BLOCKS))
        mp.run(MKFS, {"flash": str(path), "blocks": BLOCKS,
                      "files": {p: d.hex() for p, d in files.items()}}, path=[], heapsize="1M")

    def run(self, code: str, words: dict[int, int] | None = None, heapsize: str = "64K",
            key: bool = True, expect_error: bool = False, **data):
        data.update(flash=str(self.path), blocks=BLOCKS,
                    words={str(a): w for a, w in (words or {}).items()})
        if key:
            data.update(d=TEST_D, pub=PUB.hex(), ueid=UEID.hex())
        return self.mp.run(RUN + code, data, path=[], heapsize=heapsize,
                           expect_error=expect_error)

    def token(self, words=None, nonce=NONCE, **data) -> str:
        return self.run(f"EMIT({nonce!r}, K)", words, **data).out


@pytest.fixture
def board(mp, tmp_path, agent_mpy) -> AttestBoard:
    return AttestBoard(mp, tmp_path / "flash.img", agent_mpy)


def payload(tok: str) -> dict:
    return jwt.decode(tok, keys.p256_public(PUB), algorithms=["ES256"],
                      options={"verify_aud": False})


def posture(tok: str) -> dict:
    return payload(tok)["mpguard_posture"]


# --- the token verifies with independent JOSE libraries --------------------------------


def test_token_verifies_with_pyjwt_and_jwcrypto(board):
    tok = board.token()
    hdr = jwt.get_unverified_header(tok)
    assert hdr == {"alg": "ES256", "kid": KID, "typ": "eat+jwt"}
    claims = payload(tok)  # PyJWT: signature, and the iat it understands
    key = jwk.JWK.from_pyca(keys.p256_public(PUB))
    j = jcjws.JWS()
    j.deserialize(tok)
    j.verify(key, alg="ES256")
    assert json.loads(j.payload) == claims
    assert key.thumbprint() == KID  # kid = RFC 7638 thumbprint of the identity key


def _b64u(s: str) -> bytes:
    assert isinstance(s, str) and "=" not in s and "+" not in s and "/" not in s
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_every_claim_has_its_rfc9711_type(board, blank_chip):
    words = espefuse_words(blank_chip, "esp32", "JTAG_DISABLE", "1")
    c = payload(board.token(words))
    # RFC 9711 4.1: eat_nonce, JSON tstr .size (10..74)
    assert c["eat_nonce"] == NONCE and 10 <= len(c["eat_nonce"]) <= 74
    # 4.2.1 ueid: binary data, base64url in JSON; type 0x02 = IEEE EUI
    assert _b64u(c["ueid"]) == UEID
    # 4.2.4 hwmodel: bytes .size (1..32)
    assert 1 <= len(_b64u(c["hwmodel"])) <= 32 and _b64u(c["hwmodel"]) == b"esp32"
    # 4.2.6 swname tstr; 4.2.7 swversion [version tstr, ? scheme int]
    assert c["swname"] == "demo" and c["swversion"] == ["1.2.0"]
    # 4.2.8 oemboot: bool; 4.2.9 dbgstat: one of the five JSON strings
    assert c["oemboot"] is False
    assert c["dbgstat"] == "disabled-permanently"
    # 4.2.11 uptime: uint seconds, only while the clock tells it; 4.3.1 iat: int NumericDate
    assert isinstance(c["iat"], int) and c["iat"] > 1704067200
    # 4.2.16 measurements: [+ [content-type uint, base64url text]]
    assert len(c["measurements"]) == 2
    for ct, body in c["measurements"]:
        assert ct == 50
        m = json.loads(_b64u(body))
        assert m["name"] in ("app", "agent") and len(m["digest"]) == 64
    # 4.2.17 measres: [+ [measurement-system tstr, [+ [result-id, result]]]]
    assert c["measres"] == [["mpguard", [["app", "success"], ["agent", "success"]]]]
    # 4.2.18 submods: {name: claims-set}
    assert c["submods"]["agent"]["swversion"][1] == 1  # multipartnumeric
    assert c["submods"]["micropython"]["swname"] == "MicroPython"
    # 4.3.2 eat_profile: a URI
    assert c["eat_profile"].startswith("tag:")
    assert "bootcount" not in c  # a chip keeps no boot counter: left out, not guessed
    assert set(c) <= {"eat_nonce", "ueid", "oemid", "hwmodel", "swname", "swversion", "oemboot",
                      "dbgstat", "uptime", "bootcount", "iat", "measurements", "measres",
                      "submods", "eat_profile", "mpguard_posture"}


def test_every_fact_says_its_status(board, blank_chip):
    words = espefuse_words(blank_chip, "esp32", "FLASH_CRYPT_CNT", "1")
    p = posture(board.token(words))
    for name, f in p.items():
        assert f["s"] in ("ok", "unsupported", "unreadable"), name
        assert ("v" in f) == (f["s"] == "ok"), name
    assert p["flash_encryption"]["v"] == {"FLASH_CRYPT_CNT": 1}
    assert p["key_purpose"] == {"s": "unsupported"}  # an ESP32 has no key purposes
    assert p["credentials"] == {"s": "ok", "v": {}}  # guard.rotate: no managed secret yet
    assert p["repl_uart"] == {"s": "unsupported"}  # no run-time query on a chip
    assert p["anchors"]["v"] == [KID]
    assert p["update"]["v"] == {"seq": 3, "app": "demo", "ver": "1.2.0", "trial": False,
                                "last": "confirmed"}
    assert p["app"]["v"]["result"] == "success" and p["app"]["v"]["files"] == 3
    assert p["agent"]["v"]["result"] == "success"
    assert p["reset_cause"]["v"] == 2
    assert p["micropython"]["v"]["mpy"] == "6.3"


def test_efuse_facts_are_what_espefuse_burned(board, blank_chip):
    words = espefuse_words(blank_chip, "esp32", "ABS_DONE_1", "1", "UART_DOWNLOAD_DIS", "1",
                           "SECURE_VERSION", "7")
    c = payload(board.token(words))
    p = c["mpguard_posture"]
    assert c["oemboot"] is True
    assert p["secure_boot"]["v"] == {"ABS_DONE_0": 0, "ABS_DONE_1": 1}
    assert p["uart_download_disable"]["v"] == {"UART_DOWNLOAD_DIS": 1}
    assert p["secure_version"]["v"] == {"SECURE_VERSION": 7}
    assert c["dbgstat"] == "enabled"


@pytest.mark.parametrize("kind, burns, want", [
    ("esp32", [], "enabled"),
    ("esp32", ["JTAG_DISABLE", "1"], "disabled-permanently"),
    ("esp32c3", ["SOFT_DIS_JTAG", "1"], "disabled"),
    ("esp32c3", ["DIS_PAD_JTAG", "1"], "enabled"),  # USB JTAG still open
    ("esp32c3", ["DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1"], "disabled-permanently"),
])
def test_dbgstat_from_the_jtag_efuses(mp, tmp_path, blank_chip, agent_mpy, kind, burns, want):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, kind=kind)
    assert payload(b.token(espefuse_words(blank_chip, kind, *burns)))["dbgstat"] == want


def test_dbgstat_fully_needs_download_mode_off_and_no_repl(board, blank_chip):
    words = espefuse_words(blank_chip, "esp32", "JTAG_DISABLE", "1", "UART_DOWNLOAD_DIS", "1")
    assert payload(board.token(words, sim=True, repl=True))["dbgstat"] == "disabled-permanently"
    c = payload(board.token(words, nonce=NONCE + "2", sim=True, repl=False))
    assert c["dbgstat"] == "disabled-fully-and-permanently"
    assert c["uptime"] == 1234 and c["bootcount"] == 9  # the virtual board's counters


def test_wifi_ap_and_webrepl_facts(mp, tmp_path, agent_mpy):
    cfg = b"PASS = 'micropythoN'\n"
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, extra={
        "/webrepl_cfg.py": cfg, "/boot.py": b"import webrepl\nwebrepl.start()\n"})
    tok = b.token(sim=True, net={"ap_active": True, "ap_open": True, "sta_connected": False})
    p = posture(tok)
    assert p["wifi_ap"]["v"] == {"ap_active": True, "ap_open": True, "sta_connected": False}
    assert p["webrepl"]["v"] == {"configured": True, "in_boot": True, "running": False,
                                 "password": "default"}
    assert b"micropythoN" not in base64.urlsafe_b64decode(tok.split(".")[1] + "==")


@pytest.mark.parametrize("cfg, want", [
    (b"PASS = 'abc12'\n", "short"),
    (b'PASS = "a-long-unique-one"\n', "set"),
    (b"PASS = \n", "unreadable"),
])
def test_webrepl_password_class_never_the_password(mp, tmp_path, agent_mpy, cfg, want):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, app=False, extra={"/webrepl_cfg.py": cfg})
    tok = b.token()
    assert posture(tok)["webrepl"]["v"]["password"] == want
    assert b"abc12" not in tok.encode() and b"a-long-unique-one" not in base64.urlsafe_b64decode(
        tok.split(".")[1] + "==")


# --- integrity: live re-hash against the manifest and the agent's digests ---------------


def test_changed_app_file_fails_its_measurement(mp, tmp_path, agent_mpy):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy,
                    extra={"/app/a/lib/util.py": b"X = 2  # changed\n", "/app/a/new.py": b""})
    c = payload(b.token())
    app = c["mpguard_posture"]["app"]["v"]
    assert app["result"] == "fail" and app["bad"] == ["lib/util.py"] and app["extra"] == ["new.py"]
    assert c["measres"] == [["mpguard", [["app", "fail"], ["agent", "success"]]]]


def test_removed_app_file_and_changed_agent_file_fail(mp, tmp_path, agent_mpy):
    changed = dict(agent_mpy)
    b = AttestBoard(mp, tmp_path / "f.img", changed, extra={"/app/a/data/cfg.json": b"{}"})
    b.run("import os\nos.remove('/app/a/data/cfg.json')\n"
          "f = open('/lib/guard/info.mpy', 'ab')\nf.write(b'x')\nf.close()\nOUT(1)", key=False)
    p = posture(b.token())
    assert p["app"]["v"]["bad"] == ["data/cfg.json"]
    assert p["agent"]["v"]["result"] == "fail" and p["agent"]["v"]["bad"] == ["info.mpy"]


def test_manifest_not_matching_the_confirmed_digest_is_no_reference(mp, tmp_path, agent_mpy):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy)
    forged = bundle.split(bundle.build([("main.py", b"evil")], KEY, app="demo", version="9",
                                       seq=3, targets=["esp32"]))[0]
    b.run(f"f = open('/mpguard/m-{b.manifest_digest[:16]}.jws', 'wb')\nf.write({forged!r})\n"
          "f.close()\nOUT(1)", key=False)
    c = payload(b.token())
    assert c["mpguard_posture"]["app"]["v"]["result"] == "not-run"
    assert ["app", "not-run"] in c["measres"][0][1]


def test_app_digest_is_the_same_on_two_boards_with_the_same_release(mp, tmp_path, agent_mpy):
    a = AttestBoard(mp, tmp_path / "a.img", agent_mpy)
    b = AttestBoard(mp, tmp_path / "b.img", agent_mpy)
    def app_digest(tok):
        bodies = [json.loads(_b64u(m[1])) for m in payload(tok)["measurements"]]
        return next(m for m in bodies if m["name"] == "app")["digest"]

    da = app_digest(a.token())
    assert da == app_digest(b.token())
    lines = "".join(f"{p}\0{hashlib.sha256(d).hexdigest()}\n" for p, d in sorted(app_files()))
    assert da == hashlib.sha256(lines.encode()).hexdigest()  # the documented definition


def test_streamed_token_is_the_same_token(board):
    # token(nonce, key, out): written to `out` in pieces, its length returned
    code = ("import guard.attest as A\nsys.stdout.write('\\x1eOUT:\"')\n"
            "n = A.token(IN['n'], K, sys.stdout)\nsys.stdout.write('\"\\n')\nOUT(n)")
    res = board.run(code, n=NONCE)
    tok, n = res.outputs
    assert len(tok) == n and payload(tok)["eat_nonce"] == NONCE


def test_prepared_payload_is_signed_in_a_second_boot(board):
    # attest.prepare measures and keeps the payload in a file; a token in the next boot (a
    # fresh process on the same flash) signs exactly that payload and removes the file
    code = "import guard.attest as A\nOUT(A.prepare(IN['n'], K))"
    n = board.run(code, n=NONCE).out
    prepared = board.run("f = open('/mpguard/eat.tmp', 'rb')\nOUT(f.read().decode())\nf.close()").out
    first, body = prepared.split("\n", 1)
    assert first == NONCE and len(body) == n
    tok = board.run(f"EMIT({NONCE!r}, K)").out
    assert jws_payload_bytes(tok) == body.encode()
    assert payload(tok)["eat_nonce"] == NONCE
    gone = board.run("import os\ntry:\n    os.stat('/mpguard/eat.tmp')\n    OUT(False)\n"
                     "except OSError:\n    OUT(True)").out
    assert gone is True


def test_a_payload_prepared_for_another_nonce_is_not_signed(board):
    board.run("import guard.attest as A\nOUT(A.prepare(IN['n'], K))", n=NONCE + "other")
    tok = board.run(f"EMIT({NONCE!r}, K)").out  # measured afresh for this nonce
    assert payload(tok)["eat_nonce"] == NONCE


def test_prepare_refuses_what_token_refuses(board):
    code = ("from guard import GuardError\nimport guard.attest as A\nA.token(IN['n'], K)\n"
            "for n in (IN['n'], 'short'):\n    try:\n        A.prepare(n, K)\n"
            "    except GuardError as e:\n        OUT(e.args[0])")
    assert board.run(code, n=NONCE).outputs == ["replay", "bad_nonce"]


def jws_payload_bytes(tok: str) -> bytes:
    import base64
    p = tok.split(".")[1]
    return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))


# --- refusals ------------------------------------------------------------------------------

BAD_NONCES = {
    "too short": "abcdefghi",
    "too long": "a" * 75,
    "not base64url": "abcdefghij+/",
    "not text": 1234567890123,
}


@pytest.mark.parametrize("name", BAD_NONCES)
def test_bad_nonce_refused(board, name):
    code = ("from guard import GuardError\nimport guard.attest as A\ntry:\n"
            "    A.token(IN['n'], K)\nexcept GuardError as e:\n    OUT(e.args[0])")
    assert board.run(code, n=BAD_NONCES[name]).out == "bad_nonce"


def test_replayed_nonce_refused_by_the_board(board):
    code = ("from guard import GuardError\nimport guard.attest as A\n"
            "t = A.token(IN['n'], K)\nOUT(len(t))\ntry:\n    A.token(IN['n'], K)\n"
            "except GuardError as e:\n    OUT(e.args[0])\n"
            "for i in range(8):\n    A.token(IN['n'] + str(i), K)\n"
            "OUT(len(A.token(IN['n'], K)))")  # 8 newer nonces later it has left the ring
    res = board.run(code, n=NONCE, heapsize="96K")
    assert res.outputs[1] == "replay" and res.outputs[0] > 1000 and res.outputs[2] > 1000


def test_no_identity_until_device_identity_lands(board):
    code = ("from guard import GuardError\nimport guard.attest as A\ntry:\n"
            "    A.token(IN['n'])\nexcept GuardError as e:\n    OUT(e.args[0])")
    assert board.run(code, n=NONCE, key=False).out == "no_identity"


@pytest.mark.parametrize("ueid", ["", "02aabb", "01" + "00" * 15, "04" + "00" * 16])
def test_bad_ueid_refused(board, ueid):
    code = ("from guard import GuardError\nimport guard.attest as A\ntry:\n"
            "    A.token(IN['n'], (K[0], K[1], bytes.fromhex(IN['u'])))\n"
            "except GuardError as e:\n    OUT(e.args[0])")
    assert board.run(code, n=NONCE, u=ueid).out == "bad_ueid"


@pytest.mark.parametrize("cfg, want", [
    (b'{"oemid": 57264}', 57264),
    (b'{"oemid": "AAAB"}', "AAAB"),
    (b'{"oemid": "bad!"}', "bad_config"),
    (b"not json", "bad_config"),
])
def test_oemid_where_configured(mp, tmp_path, agent_mpy, cfg, want):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, app=False,
                    extra={"/mpguard/attest.json": cfg})
    code = ("from guard import GuardError\nimport guard.attest as A\ntry:\n"
            "    EMIT(IN['n'], K)\nexcept GuardError as e:\n    OUT(e.args[0])")
    got = b.run(code, n=NONCE).out
    assert (payload(got)["oemid"] if want != "bad_config" else got) == want


def test_without_profile_efuse_facts_are_unsupported_and_claims_left_out(mp, tmp_path, agent_mpy):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, app=False)
    b.run("import os\nos.remove('/lib/guard/board.json')\nOUT(1)", key=False)
    c = payload(b.token())
    assert "oemboot" not in c and "dbgstat" not in c and "hwmodel" not in c
    assert c["mpguard_posture"]["jtag_disable"] == {"s": "unsupported"}
    assert c["mpguard_posture"]["agent"]["v"]["result"] == "fail"  # board.json is listed


def test_malformed_profile_makes_efuse_facts_unreadable(mp, tmp_path, agent_mpy):
    b = AttestBoard(mp, tmp_path / "f.img", agent_mpy, app=False)
    b.run("f = open('/lib/guard/board.json', 'w')\nf.write('{')\nf.close()\nOUT(1)", key=False)
    p = posture(b.token())
    assert p["jtag_disable"] == {"s": "unreadable", "why": "bad_profile"}


# --- heap: the token is built within the board's heap ---------------------------------------


def smallest_heap(b: AttestBoard, code: str, lo: int = 16, hi: int = 64) -> int | None:
    """The smallest -X heapsize in KiB (1 KiB steps) under which `code` completes, or None."""
    def fits(k: int) -> bool:
        try:
            b.run(code, heapsize=f"{k}K", expect_error=True)
            return True
        except (DeviceError, ValueError):  # ValueError: the heap ran out mid-way through an OUT line
            return False
    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def test_token_fits_the_64k_heap_with_the_agent_loaded(board):
    code = f"EMIT({NONCE!r}, K)"
    need = smallest_heap(board, code)
    base = smallest_heap(board, "OUT(1)", lo=4)
    assert need is not None, "the token does not fit 64K"
    assert base is not None and need > base  # the harness alone is smaller: the scan is real
    print(f"token: needs -X heapsize={need}K (harness alone {base}K)")


def test_token_leaves_the_modules_as_it_found_them(board):
    # a token loads claims, posture, jws and P-256 and unloads them again: a second token in
    # the same session (the host's attest, then a check of replay) must fit where one did
    code = ("import sys\nimport guard.attest as A\nb = sorted(sys.modules)\nA.token(IN['n'], K)\n"
            "OUT(sorted(sys.modules) == b)\nOUT([m for m in sys.modules if m not in b])")
    res = board.run(code, n=NONCE)
    assert res.outputs == [True, []], res.outputs
    one = smallest_heap(board, f"EMIT({NONCE!r}, K)")
    two = smallest_heap(board, f"EMIT({NONCE!r}, K)\nEMIT({NONCE + 'x'!r}, K)")
    # the second loads the same modules again into a heap whose interned names (qstrs, never
    # freed) the first left between them: some KiB more, measured, still within the 64K heap
    assert one is not None and two is not None and two <= one + 6, (one, two)
    print(f"token: one needs {one}K, two in a row {two}K")
