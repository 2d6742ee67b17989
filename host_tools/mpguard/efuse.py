"""eFuse words from an `espefuse --virt --path-efuse-file F` file, at the chip's addresses.

File format (esptool 5.x, espefuse's EmulateEfuseControllerBase): the whole eFuse register
window of the chip, `EFUSE_MEM_SIZE` bytes starting at `DR_REG_EFUSE_BASE`, kept as one
bit string whose *end* is the lowest address: the register at `base + off` is the 4 bytes
at file offset `size - off - 4`, most significant byte first. A board profile's
`efuse_regs` {`base`, `size`} gives both numbers, so reading needs no esptool at run time.

The virtual board serves these words to the agent at the real addresses; `field_value`
reads one field of a profile's eFuse map the same way the agent does on a chip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import EfuseError


def _regs(profile: dict[str, Any]) -> tuple[int, int]:
    try:
        base, size = int(profile["efuse_regs"]["base"]), int(profile["efuse_regs"]["size"])
    except (KeyError, TypeError, ValueError):
        raise EfuseError("board profile has no efuse_regs {base, size}") from None
    if size <= 0 or size % 4:
        raise EfuseError(f"board profile efuse_regs size {size} is not a positive multiple of 4")
    return base, size


def profile_fields(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """Every field spec of the profile's eFuse map (each fact's `fields`, or the fact itself)."""
    try:
        facts = profile["efuse"]
        out = []
        for spec in facts.values():
            out.extend(spec.get("fields") or [spec])
    except (KeyError, AttributeError, TypeError):
        raise EfuseError("board profile has no valid efuse map") from None
    return out


def read_efuse_file(efuse_file: str | os.PathLike[str], profile: dict[str, Any]) -> bytes:
    """The raw file, checked to be exactly the profile's eFuse register window."""
    _, size = _regs(profile)
    try:
        data = Path(efuse_file).read_bytes()
    except FileNotFoundError:
        raise EfuseError(f"eFuse file {efuse_file} does not exist") from None
    except OSError as e:
        raise EfuseError(f"cannot read eFuse file {efuse_file}: {e.strerror}") from None
    if len(data) != size:
        raise EfuseError(
            f"eFuse file {efuse_file} has {len(data)} bytes, a {profile.get('chip', '?')} "
            f"eFuse file has {size} (wrong --chip?)"
        )
    return data


def word_at(data: bytes, profile: dict[str, Any], addr: int) -> int:
    """The 32-bit register at absolute address `addr` from the raw file contents."""
    base, size = _regs(profile)
    off = addr - base
    if off < 0 or off + 4 > size or off % 4:
        raise EfuseError(f"address {addr:#x} is not an eFuse register of this board")
    start = size - off - 4
    return int.from_bytes(data[start : start + 4], "big")


def pin_addrs(profile: dict[str, Any]) -> list[int]:
    """The read-register addresses of the anchors pin's words (boards.pin_spec), or []."""
    try:
        return [int(a) for a in (profile.get("anchors_pin") or {}).get("addrs") or []]
    except (TypeError, ValueError, AttributeError):
        raise EfuseError("board profile has a malformed anchors_pin") from None


def efuse_words(efuse_file: str | os.PathLike[str], profile: dict[str, Any]) -> dict[int, int]:
    """{address: 32-bit word} for every register the profile's eFuse fields and its anchors
    pin live in."""
    data = read_efuse_file(efuse_file, profile)
    words: dict[int, int] = {}
    for spec in profile_fields(profile):
        try:
            addr = int(spec["addr"])
        except (KeyError, TypeError, ValueError):
            raise EfuseError(f"eFuse field spec without an address: {spec!r}") from None
        words[addr] = word_at(data, profile, addr)
    for addr in pin_addrs(profile):
        words[addr] = word_at(data, profile, addr)
    return words


def pin_bytes(words: dict[int, int], profile: dict[str, Any]) -> bytes | None:
    """The anchors pin as burned (its words little-endian, as the block's bytes), or None when
    the profile has no pin. All zeros: nothing pinned."""
    addrs = pin_addrs(profile)
    if not addrs:
        return None
    try:
        return b"".join(words[a].to_bytes(4, "little") for a in addrs)
    except KeyError as e:
        raise EfuseError(f"no eFuse word read at {e.args[0]:#x}") from None


def field_value(words: dict[int, int], field_spec: dict[str, Any]) -> int:
    """The value of one field: `width` bits from bit `bit` of the word at `addr`."""
    try:
        addr, bit, width = int(field_spec["addr"]), int(field_spec["bit"]), int(field_spec["width"])
    except (KeyError, TypeError, ValueError):
        raise EfuseError(f"malformed eFuse field spec: {field_spec!r}") from None
    if bit < 0 or width < 1 or bit + width > 32:
        raise EfuseError(f"eFuse field spec {field_spec!r} does not fit a 32-bit word")
    if addr not in words:
        raise EfuseError(f"no eFuse word read at {addr:#x}")
    return (words[addr] >> bit) & ((1 << width) - 1)


def fact_values(words: dict[int, int], profile: dict[str, Any]) -> dict[str, dict[str, int]]:
    """{fact: {field name: value}} for every posture fact of the profile (what the agent reports)."""
    out: dict[str, dict[str, int]] = {}
    for fact, spec in profile.get("efuse", {}).items():
        out[fact] = {f["field"]: field_value(words, f) for f in spec.get("fields") or [spec]}
    return out
