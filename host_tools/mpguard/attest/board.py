"""Every call attestation makes to a board, in one place.

Agent function used (the board's RPC table must list it):
    guard.attest.token(nonce, key=None, out=None)   rpc name "attest.token"

The token (about 3 KB) is streamed: the board writes it to its console in pieces
(`token(nonce, None, sys.stdout)`) between a start mark and a newline, so no 3 KB string,
nor the RPC answer's JSON copies of it, must fit a busy board's fragmented heap. A refusal
(GuardError) is framed as link.call frames it, and becomes DeviceRefused.
"""

from __future__ import annotations

import json

from ..errors import DeviceError, DeviceRefused
from ..link import BoardLink

TOKEN = "guard.attest.token"
RPC_NAMES = ("attest.token",)
_MARK = "\x1eEAT:"
_ERR = "\x1eERR:"
_CODE = """\
import sys, json as _j
def _eat():
    from guard import attest
    try:
        sys.stdout.write({mark!r})
        attest.token({nonce!r}, None, sys.stdout)
        sys.stdout.write('\\n')
    except Exception as e:
        if type(e).__name__ != 'GuardError':
            raise
        print({err!r} + _j.dumps([str(a) if not isinstance(a, (int, str)) else a for a in e.args]))
_eat()
del _eat
"""


def token(link: BoardLink, nonce: str, timeout: float = 120.0) -> str:
    """The board's token over `nonce`; a refusal on the board raises DeviceRefused(reason)."""
    out = link.exec(_CODE.format(mark=_MARK, nonce=nonce, err=_ERR), timeout)
    for line in out.split("\n"):
        line = line.rstrip("\r")
        i = line.find(_ERR)
        if i >= 0:
            args = json.loads(line[i + len(_ERR):])
            raise DeviceRefused(str(args[0]) if args else "refused", args[1] if len(args) > 1 else None)
        i = line.find(_MARK)
        if i >= 0 and line.count(".") == 2:
            return line[i + len(_MARK):]
    raise DeviceError(f"{TOKEN} gave no token", device_traceback=out[-2000:])
