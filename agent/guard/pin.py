# guard.pin: the trust anchors' digest pinned in a user eFuse block (docs/fuse.md).
# `mpguard fuse harden` burns the first bytes of the SHA-256 of /mpguard/anchors.json into
# words of the chip's user block that no other eFuse field uses (boards/*.json "anchors_pin";
# tests/host/test_fuse_pin.py keeps _PIN equal to it). The addresses live here, not in the
# board profile (a file, as writable as the anchors): the chip is the firmware's own name
# (guard.hw.chip), the words are read through guard.hw.
# state(data): "unpinned" (the pin words are blank), "match" (the first bytes of
#   SHA-256(data) are the pin), "mismatch", or None (a chip this table does not know).
# check(path): GuardError("anchors_pin") if the pin is burned and the anchors file at path
#   does not match it; guard.install calls it first, before it reads the bundle, and
#   unloads this module with the others it loaded.
# Reasons: anchors_pin.
from hashlib import sha256

from guard import GuardError, hw

# chip -> (read address of the user block's word 0, word indexes of the pin)
_PIN = {
    "ESP32": (0x3FF5A078, 2, 6, 7),
    "ESP32S2": (0x3F41A07C, 0, 1, 2, 3, 4, 5),
    "ESP32S3": (0x6000707C, 0, 1, 2, 3, 4, 5),
    "ESP32C3": (0x6000887C, 0, 1, 2, 3, 4, 5),
}


def state(data):
    p = _PIN.get(hw.chip())
    if not p:
        return None
    pin = b""
    for w in p[1:]:
        pin += hw.mem32(p[0] + 4 * w).to_bytes(4, "little")
    if not any(pin):
        return "unpinned"
    return "match" if sha256(data).digest()[: len(pin)] == pin else "mismatch"


def check(path):
    # The anchors file at path against the pin (the caller unloads this module after, as
    # guard.install does every module it loaded: its heap is tight).
    with open(path, "rb") as f:
        s = state(f.read())
    if s == "mismatch":
        raise GuardError("anchors_pin")
