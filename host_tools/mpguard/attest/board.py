"""Every call attestation makes to a board, in one place.

Agent functions used (in the board's RPC table, agent/guard/rpc.py):
    attest.prepare(nonce) -> the payload's length (the claims measured, kept in a file)
    attest.token(nonce)   -> the signed EAT (compact JWS), of the prepared payload if any

The token (about 3 KB) is written by the board into its RPC answer as it is signed
(guard.rpc `_WRITES`), so no 3 KB string, nor a JSON copy of it, must fit a busy board's
fragmented heap. A refusal (GuardError) becomes DeviceRefused, as for every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DeviceError

if TYPE_CHECKING:
    from ..link import BoardLink

RPC_NAMES = ("attest.prepare", "attest.token")


def token(link: BoardLink, nonce: str, timeout: float = 120.0, *, split: bool = True) -> str:
    """The board's token over `nonce`; a refusal on the board raises DeviceRefused(reason).

    `split` (the default): the board measures (attest.prepare, the payload kept in a file),
    a soft reset gives it a fresh heap, and it signs (attest.token): measuring and signing
    in one call do not fit a 64 KiB heap in one piece. Without it, one call does both."""
    if split:
        link.call("attest.prepare", [nonce], timeout=timeout)
        link.soft_reset()
    tok = link.call("attest.token", [nonce], timeout=timeout)
    if not isinstance(tok, str) or tok.count(".") != 2:
        raise DeviceError("attest.token gave no token", device_traceback=str(tok)[:2000])
    return tok
