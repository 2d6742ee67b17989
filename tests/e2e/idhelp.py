"""Helpers for the identity end-to-end tests (a helper module, not tests): a project with
its inventory, the board's files as a snapshot, the inventory as a snapshot, (test-only) the
board's private key read from its flash *through the board* or from the virtual board's
flash image file, never a host command; and the search for that key on the host side."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mpguard import project
from mpguard.identity import records
from mpguard.link import BoardLink

MPGUARD = [str(Path(sys.executable).parent / "mpguard")]


class Cli:
    """The `mpguard` command as a user runs it (a subprocess in `cwd`, with `env`)."""

    def __init__(self, env, cwd: Path):
        self.env, self.cwd = env, cwd
        self.transcript: list[str] = []  # every stdout and stderr, for the grep test

    def __call__(self, *args: str, code: int | tuple[int, ...] = 0,
                 env=None) -> subprocess.CompletedProcess:
        r = subprocess.run(MPGUARD + list(args), env=env or self.env, cwd=self.cwd,
                           capture_output=True, text=True, timeout=180)
        self.transcript += [r.stdout, r.stderr]
        codes = code if isinstance(code, tuple) else (code,)
        assert r.returncode in codes, f"mpguard {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str, code: int | tuple[int, ...] = 0) -> object:
        return json.loads(self(*args, "--json", code=code).stdout)


SNAPSHOT = """\
import os, json, hashlib, binascii, gc
gc.collect()
def _walk(d, out):
    for e in os.ilistdir(d):
        p = (d if d != '/' else '') + '/' + e[0]
        if e[1] == 0x4000:
            _walk(p, out)
        else:
            h, b = hashlib.sha256(), bytearray(512)
            with open(p, 'rb') as f:
                n = f.readinto(b)
                while n:
                    h.update(b[:n])
                    n = f.readinto(b)
            out[p] = binascii.hexlify(h.digest()).decode()
    return out
print(json.dumps(_walk('/', {})))
"""


def snapshot(link: BoardLink) -> dict[str, str]:
    """Every file on the board with its SHA-256 (read in 512-byte pieces: an agent's .py
    source of 11 KB read whole needed a free block that size of a fragmented heap)."""
    link.soft_reset()
    return json.loads(link.exec(SNAPSHOT).strip().split("\n")[-1])


def use_inventory(root: Path, url: str) -> project.Project:
    """Point a project's inventory at `url` (its mpguard.json `inventory` key, as a user
    points one at PostgreSQL): every command then uses that database."""
    cfg = Path(root) / project.CONFIG_NAME
    cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), inventory=url), indent=2))
    return project.load(Path(root))


class Proj:
    """A project (keys unencrypted) with its inventory (the project's SQLite file, or the
    database at `inventory`, a URL)."""

    def __init__(self, root: Path, inventory: str | None = None):
        self.proj = project.init(root, passphrase=None, targets=["sim"])
        if inventory is not None:
            self.proj = use_inventory(self.proj.root, inventory)
        self.root = self.proj.root

    def inventory(self, **kw):
        from mpguard.inventory import Inventory

        return Inventory.open(project_root=self.root, **kw)

    def state(self) -> dict:
        """Everything the inventory holds, comparable: devices, certificates, events."""
        with records.open_inventory(self.root) as inv:
            devs = inv.devices()
            return {
                "devices": [(d.ueid, d.thumbprint, d.certificate.serial) for d in devs],
                "certs": {d.ueid: [(c.serial, c.revoked_at) for c in inv.certificates(d.ueid)]
                          for d in devs},
                "events": [(e.ueid, e.kind) for e in inv.events()],
            }


def board_private_key(link: BoardLink) -> bytes:
    """TEST ONLY: the board's identity key as SEC1 DER, read from its flash by the board.
    The host's commands never ask for it; the grep test needs it to look for it."""
    der = link.get("/mpguard/id")[:121]
    serialization.load_der_private_key(der, None)  # it is the key
    return der


_SEC1_HEAD = b"\x30\x77\x02\x01\x01\x04\x20"  # SEC1 ECPrivateKey (RFC 5915), P-256


def flash_private_keys(image: Path) -> list[bytes]:
    """TEST ONLY: every P-256 private key (SEC1 DER) in a virtual board's flash image file,
    read as only a test can (the host's commands never open it): the identity key and any
    pending or stale copy littlefs still holds."""
    data = Path(image).read_bytes()
    found: list[bytes] = []
    at = data.find(_SEC1_HEAD)
    while at >= 0:
        der = data[at:at + 121]
        try:
            key = serialization.load_der_private_key(der, None)
        except ValueError:
            key = None
        if isinstance(key, ec.EllipticCurvePrivateKey) and der not in found:
            found.append(der)
        at = data.find(_SEC1_HEAD, at + 1)
    return found


def public_point(sec1_der: bytes) -> bytes:
    key = serialization.load_der_private_key(sec1_der, None)
    return key.public_key().public_bytes(serialization.Encoding.X962,  # type: ignore[union-attr]
                                         serialization.PublicFormat.UncompressedPoint)


def key_encodings(sec1_der: bytes) -> dict[str, bytes]:
    """The private key in every encoding we can think of, as bytes to search for."""
    key = serialization.load_der_private_key(sec1_der, None)
    d = key.private_numbers().private_value  # type: ignore[union-attr]
    raw = d.to_bytes(32, "big")
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    out = {"raw scalar": raw, "decimal": str(d).encode(), "SEC1 DER": sec1_der,
           "PKCS#8 DER": pkcs8}
    for name, b in (("scalar", raw), ("SEC1", sec1_der), ("PKCS#8", pkcs8)):
        out[f"{name} hex"] = b.hex().encode()
        out[f"{name} HEX"] = b.hex().upper().encode()
        out[f"{name} base64"] = base64.b64encode(b).rstrip(b"=")
        out[f"{name} base64url"] = base64.urlsafe_b64encode(b).rstrip(b"=")
    return out


def find_key(blobs: dict[str, bytes], encodings: dict[str, bytes]) -> list[str]:
    """Where any encoding occurs; PEM/base64 line breaks are ignored."""
    hits = []
    for where, data in blobs.items():
        flat = data.replace(b"\r", b"").replace(b"\n", b"")
        for name, enc in encodings.items():
            if enc in data or enc in flat:
                hits.append(f"{name} in {where}")
    return hits


def split_probe(encodings: dict[str, bytes]) -> dict[str, bytes]:
    """A blob holding the key as base64 split over two PEM lines: find_key must find it."""
    b64 = base64.b64encode(encodings["PKCS#8 DER"])
    return {"probe": b"xx" + b64[:40] + b"\n" + b64[40:] + b"yy"}


def host_side(tmp_path: Path, sims: Path, transcript: list[str], console: bytes) -> dict[str, bytes]:
    """Every host-side file under tmp_path (the board's own flash image excluded: that is the
    board), the CLI transcript and what the board printed."""
    blobs = {"CLI output": "\n".join(transcript).encode(), "board console": console}
    for path in tmp_path.rglob("*"):
        if path.is_file() and not (path.is_relative_to(sims) and path.suffix == ".img"):
            blobs[str(path.relative_to(tmp_path))] = path.read_bytes()
    return blobs
