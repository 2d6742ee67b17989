"""Board profiles (boards/KIND.json): chip, budgets and the eFuse map posture needs.

(Over 300 lines: generating a profile from esptool's tables and checking it for drift are
one piece of knowledge about esptool's layout.)

The eFuse map is never typed in by hand. `generate_profile(kind)` reads the installed
esptool's own eFuse definitions (espefuse's per-chip `mem_definition`: the field table from
`efuse_defs/<chip>.yaml` and the block read-register addresses) and computes, for every
field a posture fact uses, the absolute address of the 32-bit read register that holds it,
the first bit and the width. What esptool does not know (heap, filesystem size) sits in one
small table below, each number with its source.

    python -m mpguard.boards --write   # regenerate boards/*.json
    python -m mpguard.boards --check   # exit 1 if a committed profile drifted

Profile schema (docs/decisions/0001-interfaces.md, extended in 0004-boards-efuse.md):
`kind`, `chip`, `heap_bytes`, `flash_bytes`, `block_size`, `ueid` ("eui" or "rand", the
UEID type, 0012-identity.md), `efuse_regs` {`base`, `size`}
(the eFuse register window an `espefuse --virt` file holds), `efuse` {fact: {`field`,
`addr`, `bit`, `width`, `fields`: [{`field`, `addr`, `bit`, `width`, `on`}, ...]}} where the
top-level `field/addr/bit/width` repeat the fact's first field, and `on` says how a value
reads: "set" (any bit set), "odd" (an odd number of bits set, esptool's bit counters),
"count" (the number of bits set) or "raw" (a bit mask), plus `esptool_version` and
`generated_by`. `flash_encryption` also has `wr_dis_bit`, the counter's bit in WR_DIS.
`anchors_pin` {`block`, `words`, `addrs`, `bytes`, `wr_dis_bit`}: where `mpguard fuse harden`
pins the digest of the board's trust anchors (docs/fuse.md): whole 32-bit words of the user
eFuse block that no field of esptool's table uses, their read-register addresses, and the
block's write-protect bit.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from .errors import BoardProfileError

GENERATED_BY = "python -m mpguard.boards --write"

# Posture facts (docs/architecture.md) -> the eFuse fields that measure them, per chip,
# with how each reads ("set": nonzero; "odd": odd popcount, as esptool's *_CRYPT_CNT and
# SOFT_DIS_JTAG counters; "count": popcount, as SECURE_VERSION's thermometer code; "raw":
# a bit mask read as is, as WR_DIS / RD_DIS / KEY_PURPOSE_n). Names are esptool's;
# generation fails if one is missing. A fact a chip does not have (the ESP32 has no key
# purposes) is left out of its profile: the agent then reports it as unsupported.
# ESP32: secure boot v1 is ABS_DONE_0, v2 (chip rev >= 3) ABS_DONE_1; the host judges.
_FACTS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "esp32": {
        "secure_boot": [("ABS_DONE_0", "set"), ("ABS_DONE_1", "set")],
        "flash_encryption": [("FLASH_CRYPT_CNT", "odd")],
        "jtag_disable": [("JTAG_DISABLE", "set")],
        "uart_download_disable": [("UART_DOWNLOAD_DIS", "set")],
        "key_protect": [("WR_DIS", "raw"), ("RD_DIS", "raw")],
        "secure_version": [("SECURE_VERSION", "count")],
    },
    "esp32s2": {
        "secure_boot": [("SECURE_BOOT_EN", "set")],
        "flash_encryption": [("SPI_BOOT_CRYPT_CNT", "odd")],
        "jtag_disable": [("HARD_DIS_JTAG", "set"), ("SOFT_DIS_JTAG", "odd")],
        "uart_download_disable": [("DIS_DOWNLOAD_MODE", "set"), ("ENABLE_SECURITY_DOWNLOAD", "set")],
        "key_protect": [("WR_DIS", "raw"), ("RD_DIS", "raw")],
        "secure_version": [("SECURE_VERSION", "count")],
        "key_purpose": [(f"KEY_PURPOSE_{i}", "raw") for i in range(6)],
    },
    "esp32s3": {
        "secure_boot": [("SECURE_BOOT_EN", "set")],
        "flash_encryption": [("SPI_BOOT_CRYPT_CNT", "odd")],
        "jtag_disable": [("DIS_PAD_JTAG", "set"), ("SOFT_DIS_JTAG", "odd"), ("DIS_USB_JTAG", "set")],
        "uart_download_disable": [("DIS_DOWNLOAD_MODE", "set"), ("ENABLE_SECURITY_DOWNLOAD", "set")],
        "key_protect": [("WR_DIS", "raw"), ("RD_DIS", "raw")],
        "secure_version": [("SECURE_VERSION", "count")],
        "key_purpose": [(f"KEY_PURPOSE_{i}", "raw") for i in range(6)],
    },
    "esp32c3": {
        "secure_boot": [("SECURE_BOOT_EN", "set")],
        "flash_encryption": [("SPI_BOOT_CRYPT_CNT", "odd")],
        "jtag_disable": [("DIS_PAD_JTAG", "set"), ("SOFT_DIS_JTAG", "odd"), ("DIS_USB_JTAG", "set")],
        "uart_download_disable": [("DIS_DOWNLOAD_MODE", "set"), ("ENABLE_SECURITY_DOWNLOAD", "set")],
        "key_protect": [("WR_DIS", "raw"), ("RD_DIS", "raw")],
        "secure_version": [("SECURE_VERSION", "count")],
        "key_purpose": [(f"KEY_PURPOSE_{i}", "raw") for i in range(6)],
    },
}
FACTS = ("secure_boot", "flash_encryption", "jtag_disable", "uart_download_disable",
         "key_protect", "secure_version", "key_purpose")
# The flash-encryption counter's write-protect bit (its WR_DIS bit, esptool's
# `write_disable_bit`) goes into the profile as `flash_encryption.wr_dis_bit`: with the
# WR_DIS word of `key_protect` the agent tells release mode (counter locked) from development.
_CRYPT_CNT = {"esp32": "FLASH_CRYPT_CNT"}

# The anchors pin (docs/fuse.md, guard/pin.py): the first bytes of the SHA-256 of the board's
# trust anchors file, in whole words of the user eFuse block that no esptool field uses
# (generation fails if one ever does). chip -> (block as espefuse names it, word indexes).
# ESP32 BLOCK3: words 0-1 custom MAC, 3 ADC calibration, 4 SECURE_VERSION, 5 MAC_VERSION are
#   taken; 2, 6, 7 (BLK3_RESERVED_2/6/7) are free: a 96-bit pin.
# ESP32-S2/S3/C3 BLOCK3 (BLOCK_USR_DATA): bytes 0-23 are user data, 25-30 CUSTOM_MAC:
#   words 0-5, a 192-bit pin.
_PIN: dict[str, tuple[str, tuple[int, ...]]] = {
    "esp32": ("BLOCK3", (2, 6, 7)),
    "esp32s2": ("BLOCK_USR_DATA", (0, 1, 2, 3, 4, 5)),
    "esp32s3": ("BLOCK_USR_DATA", (0, 1, 2, 3, 4, 5)),
    "esp32c3": ("BLOCK_USR_DATA", (0, 1, 2, 3, 4, 5)),
}
# esptool fields that only name free space (reserved words, the user-data area itself)
_PIN_FREE = ("BLK3_RESERVED_2", "BLK3_RESERVED_6", "BLK3_RESERVED_7", "BLOCK_USR_DATA")

_KIB = 1024
_MIB = 1024 * 1024
# Budgets esptool does not know. kind -> (chip, heap_bytes, flash_bytes, block_size).
# heap_bytes: MicroPython's initial GC heap on the port, MICROPY_GC_INITIAL_HEAP_SIZE in
#   ports/esp32/mpconfigport.h (ESP32 56 KiB, ESP32-S2 without SPIRAM 36 KiB, others 64 KiB);
#   the heap can grow later, so this is what an operation can count on.
# flash_bytes: the `vfs` partition of the generic board's default partition table:
#   ESP32/S2/C3 GENERIC (4 MiB flash) ports/esp32/partitions-4MiB.csv vfs 0x200000;
#   ESP32_GENERIC_S3 (8 MiB, sdkconfig.board) ports/esp32/partitions-8MiB.csv vfs 0x600000.
# block_size: the esp32 port's flash erase block (esp32.Partition block size, 4096).
# sim: the virtual board (docs/sim.md): ESP32 eFuse map, heap 64 KiB, 2 MiB image.
_BUDGETS: dict[str, tuple[str, int, int, int]] = {
    "esp32": ("esp32", 56 * _KIB, 2 * _MIB, 4096),
    "esp32s2": ("esp32s2", 36 * _KIB, 2 * _MIB, 4096),
    "esp32s3": ("esp32s3", 64 * _KIB, 6 * _MIB, 4096),
    "esp32c3": ("esp32c3", 64 * _KIB, 2 * _MIB, 4096),
    "sim": ("esp32", 64 * _KIB, 2 * _MIB, 4096),
}


# UEID type of each kind (RFC 9711 4.2.1; guard.identity): "eui" = type 0x02 + the chip's
# factory MAC (machine.unique_id(): the base MAC in eFuse BLK0, from Espressif's IEEE OUI, so
# globally unique), or "rand" = type 0x01 + 16 random bytes made once on the board (for
# chips without a unique id, or to keep the MAC out of certificates and attestations).
_UEID: dict[str, str] = {"esp32": "eui", "esp32s2": "eui", "esp32s3": "eui", "esp32c3": "eui",
                         "sim": "eui"}


def profile_kinds() -> list[str]:
    """Every board kind mpguard has a profile for, sorted."""
    return sorted(_BUDGETS)


def boards_dir() -> Path:
    """The boards/ folder of this checkout."""
    return Path(__file__).resolve().parents[2] / "boards"


def _check_kind(kind: str) -> None:
    if kind not in _BUDGETS:
        raise BoardProfileError(
            f"unknown board kind {kind!r} (known: {', '.join(profile_kinds())})"
        )


def esptool_version() -> str:
    import esptool

    return str(esptool.__version__)


@functools.cache
def chip_definitions(chip: str) -> tuple[Any, Any, Any]:
    """esptool's (registers, blocks, fields) definitions for `chip` (e.g. "esp32c3").

    Read once per chip and process (esptool parses its tables for each `EfuseDefineFields`:
    about 0.2 s, and a profile asks for them about twenty times); read only."""
    try:
        mod = importlib.import_module(f"espefuse.efuse.{chip}.mem_definition")
    except ModuleNotFoundError:
        raise BoardProfileError(f"the installed esptool has no eFuse definitions for {chip}") from None
    return mod.EfuseDefineRegisters, mod.EfuseDefineBlocks, mod.EfuseDefineFields(None)


def field_spec(chip: str, name: str) -> dict[str, int | str]:
    """Where esptool says eFuse field `name` of `chip` is: read-register address, bit, width."""
    regs, blocks, fields = chip_definitions(chip)
    for f in fields.EFUSES:
        if f.name == name or name in f.alt_names:
            break
    else:
        raise BoardProfileError(f"esptool {esptool_version()} has no eFuse field {name} on {chip}")
    for b in blocks.BLOCKS:
        blk = blocks.get(b)
        if blk.id == f.block:
            break
    else:
        raise BoardProfileError(f"{chip}: field {name} is in unknown block {f.block}")
    if f.word is None or f.pos is None or not 0 < f.bit_len <= 32 or f.pos + f.bit_len > 32:
        raise BoardProfileError(f"{chip}: field {name} does not fit one 32-bit word")
    addr = blk.rd_addr + 4 * f.word
    if not regs.DR_REG_EFUSE_BASE <= addr < regs.DR_REG_EFUSE_BASE + regs.EFUSE_MEM_SIZE:
        raise BoardProfileError(f"{chip}: field {name} lies outside the eFuse registers")
    return {"field": f.name, "addr": addr, "bit": f.pos, "width": f.bit_len}


def write_disable_bit(chip: str, name: str) -> int:
    """The WR_DIS bit that write-protects eFuse field `name` of `chip` (esptool's table)."""
    _, _, fields = chip_definitions(chip)
    for f in fields.EFUSES:
        if f.name == name and isinstance(f.write_disable_bit, int):
            return int(f.write_disable_bit)
    raise BoardProfileError(f"esptool {esptool_version()} has no write-protect bit for {name} on {chip}")


def all_fields(chip: str) -> list[Any]:
    """Every eFuse field esptool defines for `chip`: its main table and the special lists
    (custom MAC, calibration, key blocks, computed fields) it keeps apart."""
    _, _, fields = chip_definitions(chip)
    out: list[Any] = []
    for name, v in vars(fields).items():
        if name.isupper() and isinstance(v, list):
            out += [f for f in v if hasattr(f, "write_disable_bit")]
    return out


def pin_spec(chip: str) -> dict[str, Any]:
    """Where the anchors pin of `chip` lives: block, words, read addresses, write-protect bit."""
    _, blocks, _ = chip_definitions(chip)
    name, words = _PIN[chip]
    for b in blocks.BLOCKS:
        blk = blocks.get(b)
        if blk.name == name:
            break
    else:
        raise BoardProfileError(f"esptool {esptool_version()} has no eFuse block {name} on {chip}")
    for f in all_fields(chip):
        whole = f.name == blk.name or f.name in blk.alias  # the block itself, as a key block
        if f.block != blk.id or whole or f.name in _PIN_FREE or f.word is None or f.pos is None:
            continue
        lo = f.word * 32 + f.pos
        if any(lo < 32 * w + 32 and 32 * w < lo + f.bit_len for w in words):
            raise BoardProfileError(f"{chip}: eFuse field {f.name} overlaps the anchors pin "
                                    f"in {name}")
    return {"block": name, "words": list(words), "addrs": [blk.rd_addr + 4 * w for w in words],
            "bytes": 4 * len(words), "wr_dis_bit": blk.write_disable_bit}


def generate_profile(kind: str) -> dict[str, Any]:
    """Build the profile of `kind` from the installed esptool and the budget table."""
    _check_kind(kind)
    chip, heap, flash, block = _BUDGETS[kind]
    regs, _, _ = chip_definitions(chip)
    efuse: dict[str, Any] = {}
    for fact in FACTS:
        if fact not in _FACTS[chip]:
            continue
        fields = []
        for name, on in _FACTS[chip][fact]:
            spec = field_spec(chip, name)
            spec["on"] = on
            fields.append(spec)
        first = fields[0]
        efuse[fact] = {k: first[k] for k in ("field", "addr", "bit", "width")}
        efuse[fact]["fields"] = fields
    efuse["flash_encryption"]["wr_dis_bit"] = write_disable_bit(
        chip, _CRYPT_CNT.get(chip, "SPI_BOOT_CRYPT_CNT"))
    return {
        "kind": kind,
        "chip": chip,
        "heap_bytes": heap,
        "flash_bytes": flash,
        "block_size": block,
        "ueid": _UEID[kind],
        "efuse_regs": {"base": regs.DR_REG_EFUSE_BASE, "size": regs.EFUSE_MEM_SIZE},
        "efuse": efuse,
        "anchors_pin": pin_spec(chip),
        "esptool_version": esptool_version(),
        "generated_by": GENERATED_BY,
    }


def dumps(profile: dict[str, Any]) -> str:
    """The committed text form of a profile (stable, so regeneration compares byte for byte)."""
    return json.dumps(profile, indent=2) + "\n"


def load_profile(kind: str, directory: Path | None = None) -> dict[str, Any]:
    """The committed profile boards/KIND.json."""
    _check_kind(kind)
    path = (directory or boards_dir()) / f"{kind}.json"
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise BoardProfileError(f"board profile {path} is missing ({GENERATED_BY})") from None
    except ValueError as e:
        raise BoardProfileError(f"board profile {path} is not valid JSON: {e}") from None
    if not isinstance(profile, dict) or profile.get("kind") != kind or "efuse" not in profile:
        raise BoardProfileError(f"board profile {path} is malformed")
    return profile


def write_profiles(directory: Path | None = None) -> list[Path]:
    out = directory or boards_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in profile_kinds():
        path = out / f"{kind}.json"
        path.write_text(dumps(generate_profile(kind)))
        paths.append(path)
    return paths


def drifted_profiles(directory: Path | None = None) -> list[str]:
    """Kinds whose committed JSON differs from what the installed esptool generates."""
    out = directory or boards_dir()
    bad = []
    for kind in profile_kinds():
        path = out / f"{kind}.json"
        if not path.exists() or path.read_text() != dumps(generate_profile(kind)):
            bad.append(kind)
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpguard.boards", description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="regenerate boards/*.json")
    g.add_argument("--check", action="store_true", help="exit 1 if a profile drifted")
    p.add_argument("--dir", type=Path, default=None, help="profiles folder (default boards/)")
    args = p.parse_args(argv)
    if args.write:
        for path in write_profiles(args.dir):
            print(path)
        return 0
    bad = drifted_profiles(args.dir)
    if bad:
        print(f"board profiles drifted from esptool {esptool_version()}: {', '.join(bad)} "
              f"(run {GENERATED_BY})", file=sys.stderr)
        return 1
    print(f"board profiles match esptool {esptool_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
