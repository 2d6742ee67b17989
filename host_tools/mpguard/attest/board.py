"""Every call attestation makes to a board, in one place.

Agent functions used (the board's RPC table must list them):
    guard.attest.token(nonce) -> str    the signed EAT (rpc name "attest.token")
"""

from __future__ import annotations

from ..errors import DeviceError
from ..link import BoardLink

TOKEN = "guard.attest.token"
RPC_NAMES = ("attest.token",)


def token(link: BoardLink, nonce: str, timeout: float = 120.0) -> str:
    """Ask the board for a token over `nonce`; a GuardError refusal becomes DeviceRefused."""
    tok = link.call(TOKEN, nonce, timeout=timeout)
    if not isinstance(tok, str):
        raise DeviceError(f"{TOKEN} answered {type(tok).__name__}, not a token")
    return tok
