"""Helpers for the identity end-to-end tests (a helper module, not tests): a project with
its inventory, the board's files as a snapshot, the inventory as a snapshot, and (test-only)
the board's private key read from its flash *through the board*, never a host command."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mpguard import project
from mpguard.identity import records
from mpguard.link import BoardLink

SNAPSHOT = """\
import os, json, hashlib, binascii, gc
gc.collect()
def _walk(d, out):
    for e in os.ilistdir(d):
        p = (d if d != '/' else '') + '/' + e[0]
        if e[1] == 0x4000:
            _walk(p, out)
        else:
            with open(p, 'rb') as f:
                out[p] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()
    return out
print(json.dumps(_walk('/', {})))
"""


def snapshot(link: BoardLink) -> dict[str, str]:
    """Every file on the board with its SHA-256."""
    link.soft_reset()
    return json.loads(link.exec(SNAPSHOT).strip().split("\n")[-1])


class Proj:
    """A project (keys unencrypted) with its inventory."""

    def __init__(self, root: Path):
        self.proj = project.init(root, passphrase=None, targets=["sim"])
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
