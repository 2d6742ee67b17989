"""What a virtual board is made of: its board profile (boards/KIND.json), eFuse words (from an
`espefuse --virt` file) and flash image (a littlefs2 file, or blank flash formatted at first boot;
a FAT one for a sim started with `--fs fat`, a board whose filesystem an older firmware made).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from ..errors import MpguardError, SimError

_LFS_MAGIC = b"littlefs"
# The filesystems a sim's flash can hold: `sim start --fs`, kept in its config with the image.
FS_KINDS = ("littlefs", "fat")
DEFAULT_FS = "littlefs"
# Fallback when mpguard.boards is missing (a partial checkout).
_FALLBACK = {"kind": "sim", "chip": "esp32", "heap_bytes": 65536, "flash_bytes": 2 << 20,
             "block_size": 4096, "efuse": {}}


def profile(kind: str) -> dict[str, Any]:
    """The board profile (boards/KIND.json) a sim of that kind runs with."""
    try:
        from .. import boards
    except ImportError:  # pragma: no cover - only in a partial checkout
        if kind != "sim":
            raise SimError(f"unknown board kind {kind!r}") from None
        return dict(_FALLBACK)
    try:
        return boards.load_profile(kind)
    except MpguardError as e:
        raise SimError(str(e)) from None


def blank_efuse_command(path: Path, chip: str) -> str:
    """The espefuse (esptool 5.6) command that makes a blank virtual chip's eFuse file at
    `path`: espefuse creates the file with the chip's defaults the first time it reads it."""
    return shlex.join(["espefuse", "--virt", "--path-efuse-file", str(path), "--chip", chip,
                       "summary"])


def efuse_words(efuse: str | os.PathLike[str], prof: dict[str, Any]) -> dict[str, int]:
    """The eFuse words (address -> value) the board profile maps, read from an espefuse file."""
    try:
        from .. import efuse as efuse_mod
    except ImportError:  # pragma: no cover
        raise SimError("eFuse support (mpguard.efuse) is not installed") from None
    path = Path(efuse)
    if not path.exists():
        e = SimError(f"eFuse file {path} does not exist")
        e.hint = f"make a blank {prof['chip']} one: {blank_efuse_command(path, prof['chip'])}"
        raise e
    try:
        words = efuse_mod.efuse_words(path, prof)
    except MpguardError as e:
        raise SimError(f"eFuse file {path}: {e}") from None
    return {str(a): int(w) for a, w in words.items()}


def check_image(path: Path, block_size: int, fs: str = DEFAULT_FS) -> int:
    """Number of blocks of a flash image; SimError if it is not an image of filesystem `fs`
    (littlefs2, or FAT: FS_KINDS) for `block_size`, or blank flash."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(2 * block_size)
    return check_head(path, size, head, block_size, fs)


def _fat_sector(head: bytes) -> int | None:
    """The sector size of a FAT boot sector at the start of `head` (as MicroPython's
    VfsFat.mkfs writes it: no partition table), else None."""
    if head[510:512] != b"\x55\xaa" or not (head[54:57] == b"FAT" or head[82:87] == b"FAT32"):
        return None
    return int.from_bytes(head[11:13], "little")


def check_head(path: Path, size: int, head: bytes, block_size: int, fs: str = DEFAULT_FS) -> int:
    """check_image of an image of `size` bytes whose first two blocks are `head`."""
    name = "a FAT" if fs == "fat" else "a littlefs"
    if size == 0 or size % block_size or size // block_size < 4:
        raise SimError(
            f"{path} is not {name} image for {block_size}-byte blocks "
            f"(size {size} is not a multiple of the block size, at least 4 blocks)"
        )
    head = head[: 2 * block_size]
    blank = head.count(0xFF) == len(head)
    lfs = None
    for blk in (0, 1):
        sb = head[blk * block_size : blk * block_size + 32]
        if sb[8:16] == _LFS_MAGIC:
            lfs = int.from_bytes(sb[24:28], "little")
            break
    fat = _fat_sector(head)
    if fs == "fat":
        if lfs is not None:
            raise SimError(f"{path} is a littlefs image; the sim's flash is FAT (--fs fat)")
        if fat is not None and fat != block_size:
            raise SimError(f"{path} is a FAT image with {fat}-byte sectors, the board uses {block_size}")
        if fat is None and not blank:
            raise SimError(f"{path} is not a FAT image (no FAT boot sector, not blank flash)")
        return size // block_size
    if lfs is not None:
        if lfs != block_size:
            raise SimError(f"{path} is a littlefs image with {lfs}-byte blocks, the board uses {block_size}")
        return size // block_size
    if fat is not None:
        raise SimError(f"{path} is a FAT image; the sim's flash is littlefs (a FAT one: "
                       "--fs fat)")
    if not blank:
        raise SimError(f"{path} is not a littlefs image (no littlefs superblock, not blank flash)")
    return size // block_size


def blank_image(path: Path, size: int) -> None:
    """Erased flash (all 0xff) of `size` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        chunk = b"\xff" * (64 * 1024)
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
