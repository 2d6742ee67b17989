"""Shared test helpers: running device code on the pinned MicroPython unix port."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mpguard import unixport
from mpguard.errors import DeviceError

pytest_plugins = ["inventory_db"]  # PostgreSQL server + inventory fixtures (both backends)

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agent"
# Standard test vectors, vendored with their licence and source (tests/vectors/*/README.md).
VECTORS = Path(__file__).resolve().parent / "vectors"


class MicroPythonRunner:
    """Runs code on MicroPython with agent/ on sys.path and a limited heap.

    A device-side traceback becomes a readable pytest failure (not a host stack dump),
    unless the test asks for the DeviceError with `expect_error=True`.
    """

    def __init__(self, heapsize: str = unixport.DEFAULT_HEAPSIZE):
        self.heapsize = heapsize

    def run(self, code, data=None, *, heapsize=None, expect_error=False, **kw):
        kw.setdefault("path", [AGENT])
        try:
            return unixport.run(code, data, heapsize=heapsize or self.heapsize, **kw)
        except DeviceError as e:
            if expect_error:
                raise
            pytest.fail(f"device code raised:\n{e.device_traceback}", pytrace=False)

    def out(self, code, data=None, **kw):
        return self.run(code, data, **kw).out


@pytest.fixture(scope="session")
def mp() -> MicroPythonRunner:
    return MicroPythonRunner()


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    return VECTORS


# --- virtual chips: blank eFuse files made by espefuse once per session -----------------


@pytest.fixture(scope="session")
def _blank_chips(tmp_path_factory):
    """chip -> this session's blank virtual chip (made by `fuse.new_virtual_chip`, i.e. by
    espefuse, at its first use; each xdist worker makes its own). Tests take copies through
    `blank_chip`, never this file."""
    from mpguard import fuse

    folder = tmp_path_factory.mktemp("blank-chips")
    made: dict[str, Path] = {}

    def get(chip: str) -> Path:
        if chip not in made:
            made[chip] = fuse.new_virtual_chip(folder / f"{chip}.efuse", chip)
        return made[chip]

    return get


@pytest.fixture
def blank_chip(_blank_chips, tmp_path):
    """blank_chip(chip="esp32", path=None) -> a blank virtual chip's eFuse file of this test
    (at `path`, else in its tmp folder): a copy of the session's, which espefuse made.

    A copy is what a test making its own would get: espefuse makes a blank chip's file as a
    function of the esptool version and the chip only (it holds no path, time or random
    value), and tests/host/test_fuse.py checks that a chip made by `fuse.new_virtual_chip`
    in a test is byte for byte the session's. Each test gets its own file to burn."""

    def copy(chip: str = "esp32", path: Path | None = None) -> Path:
        dest = Path(path) if path is not None else tmp_path / f"{chip}-efuse.bin"
        if dest.exists():
            raise FileExistsError(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_blank_chips(chip), dest)
        return dest

    return copy


# --- attestation: boards recorded in the real inventory, and host-made tokens ------------


@pytest.fixture
def device_ca(tmp_path):
    """A real device CA (mpguard.identity.ca, as `mpguard init` makes one), key unencrypted."""
    from mpguard.identity import ca

    root = tmp_path / "device-ca"
    root.mkdir()
    ca.create(root, None)
    return ca.DeviceCA(root, None)


def enroll_board(inv, device_ca, key, ueid: bytes, *, days: int | None = None):
    """Record a board whose key is the host-side test `key` as `mpguard provision` records
    one: a certificate from the real device CA (`days` of validity), added through
    Inventory.add_device. Returns the inventory's Device. For host-only tests whose tokens
    are signed by a test key; a board on the virtual board gets its identity from provision."""
    from cryptography.hazmat.primitives import serialization

    from mpguard import boards, files, keys

    cert = device_ca.issue(key.public_key(), files.b64u_enc(ueid),
                           **({} if days is None else {"days": days}))
    return inv.add_device(ueid, kind="sim", chip=boards.load_profile("sim")["chip"],
                          mac=ueid[1:7].hex(), public_key=keys.public_bytes(key),
                          cert_der=cert.public_bytes(serialization.Encoding.DER),
                          provisioned_by="tester@host", agent_version="0.1.0")


@pytest.fixture
def enroll(device_ca):
    """enroll(inv, key, ueid, days=None) -> Device: enroll_board with this test's device CA."""

    def go(inv, key, ueid: bytes, *, days: int | None = None):
        return enroll_board(inv, device_ca, key, ueid, days=days)

    return go


def eat_claims(nonce: str, ueid: bytes, **over):
    """Claims as guard.attest makes them for a `sim` board (ESP32 eFuse map), all facts ok,
    app and agent verified; `over` replaces claims, `posture={...}` replaces facts."""
    import base64
    import time

    def b64u(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    def ok(v):
        return {"s": "ok", "v": v}

    body = b64u(b'{"name": "app", "alg": "sha-256", "digest": "' + b"0" * 64 + b'", "files": 3}')
    posture = {
        "secure_boot": ok({"ABS_DONE_0": 0, "ABS_DONE_1": 1}),
        "flash_encryption": ok({"FLASH_CRYPT_CNT": 1}),
        "jtag_disable": ok({"JTAG_DISABLE": 1}),
        "uart_download_disable": ok({"UART_DOWNLOAD_DIS": 1}),
        "key_protect": ok({"WR_DIS": 4, "RD_DIS": 1}),
        "secure_version": ok({"SECURE_VERSION": 3}),
        "key_purpose": {"s": "unsupported"},
        "partition_encrypted": ok(True),
        "webrepl": ok({"configured": False, "in_boot": False, "running": False, "password": "none"}),
        "repl_uart": ok(False),
        "wifi_ap": ok({"ap_active": False, "ap_open": False, "sta_connected": True}),
        "credentials": {"s": "unsupported"},
        "update": ok({"seq": 3, "app": "demo", "ver": "1.2.0", "trial": False, "last": "confirmed"}),
        "anchors": ok(["k1"]),
        "anchors_pin": ok("match"),
        "app": ok({"result": "success", "digest": "0" * 64, "files": 3, "bad": [], "extra": []}),
        "agent": ok({"result": "success", "digest": "1" * 64, "files": 13, "bad": [], "extra": []}),
        "micropython": ok({"version": "1.28.0", "mpy": "6.3"}),
        "reset_cause": ok(1),
        "heap": ok({"free": 30000, "alloc": 20000}),
        "flash": ok({"free": 1500000, "total": 2000000}),
    }
    posture.update(over.pop("posture", {}))
    c = {"eat_profile": "tag:mpguard.invalid,2025:eat-profile:1", "eat_nonce": nonce,
         "ueid": b64u(ueid), "hwmodel": b64u(b"sim"), "swname": "demo", "swversion": ["1.2.0"],
         "oemboot": True, "dbgstat": "disabled-fully-and-permanently", "uptime": 10,
         "bootcount": 2, "iat": int(time.time()), "measurements": [[50, body]],
         "measres": [["mpguard", [["app", "success"], ["agent", "success"]]]],
         "submods": {"agent": {"swname": "mpguard-agent", "swversion": ["0.1.0", 1]}},
         "mpguard_posture": posture}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def eat_token(key, claims) -> str:
    import json

    from mpguard import jose

    return jose.sign(json.dumps(claims).encode(), key, {"typ": "eat+jwt"})


@pytest.fixture
def eat():
    """Host-made attestation tokens: eat.claims(nonce, ueid, **over), eat.token(key, claims)."""

    class Eat:
        claims = staticmethod(eat_claims)
        token = staticmethod(eat_token)

    return Eat


def pytest_collection_modifyitems(config, items):
    """The long tests (marked slow) first: under xdist the last tests to start decide when
    the run ends, and a 30-50 s power-cut sweep that started last kept one worker busy while
    the others had nothing left (the order is otherwise kept)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
