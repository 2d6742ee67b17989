"""The virtual board's flash image: a littlefs2 file (or blank flash, formatted at first boot)."""

from __future__ import annotations

from pathlib import Path

from ..errors import SimError

_LFS_MAGIC = b"littlefs"


def check_image(path: Path, block_size: int) -> int:
    """Number of blocks of a flash image; SimError if it is not a littlefs2 (or blank) image."""
    size = path.stat().st_size
    if size == 0 or size % block_size or size // block_size < 4:
        raise SimError(
            f"{path} is not a littlefs image for {block_size}-byte blocks "
            f"(size {size} is not a multiple of the block size, at least 4 blocks)"
        )
    with open(path, "rb") as f:
        head = f.read(2 * block_size)
    blank = head.count(0xFF) == len(head)
    for blk in (0, 1):
        sb = head[blk * block_size : blk * block_size + 32]
        if sb[8:16] == _LFS_MAGIC:
            bs = int.from_bytes(sb[24:28], "little")
            if bs != block_size:
                raise SimError(f"{path} is a littlefs image with {bs}-byte blocks, the board uses {block_size}")
            return size // block_size
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
