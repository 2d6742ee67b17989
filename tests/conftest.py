"""Shared test helpers: running device code on the pinned MicroPython unix port."""

from __future__ import annotations

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


# --- attestation: an inventory stand-in and host-made tokens -----------------------------


class FakeInventory:
    """In memory, the part of mpguard.inventory's API attestation uses (device, device_by_
    thumbprint, devices, add_event, events), until the inventory lands on this branch.
    Devices are a list, so tests can also hold two records with one UEID or one key."""

    def __init__(self):
        import datetime as dt

        self._dt = dt
        self.devices_ = []
        self.events_ = []

    def add_device(self, ueid: bytes, public_key, name: str = "", cert_not_after=None):
        from mpguard import keys

        rec = {"ueid": bytes(ueid), "public_key": keys.public_bytes(public_key),
               "kid": keys.thumbprint(public_key), "name": name,
               "cert_not_after": cert_not_after}
        self.devices_.append(rec)
        return rec

    def device(self, ueid):
        return next((d for d in self.devices_ if d["ueid"] == bytes(ueid)), None)

    def device_by_thumbprint(self, kid):
        return next((d for d in self.devices_ if d["kid"] == kid), None)

    def devices(self):
        return list(self.devices_)

    def add_event(self, ueid, kind, data, at=None):
        import copy

        at = at or self._dt.datetime.now(self._dt.UTC)
        self.events_.append({"ueid": bytes(ueid), "kind": kind, "data": copy.deepcopy(data), "at": at})

    def events(self, ueid=None, kind=None, since=None):
        return [e for e in self.events_ if (ueid is None or e["ueid"] == bytes(ueid))
                and (kind is None or e["kind"] == kind) and (since is None or e["at"] >= since)]


@pytest.fixture
def fake_inventory() -> FakeInventory:
    return FakeInventory()


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
