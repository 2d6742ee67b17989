# guard.rpc: the host's one way into the agent (docs/decisions/0010-board-rpc.md). The host
# sends no code, only a call of this module with a name and JSON arguments:
#   import guard.rpc
#   guard.rpc.run('update.status', '[]')
#   guard.rpc.stream('update.install', '[]', 1234, '<sha256 hex>')   # then the bulk data
#   guard.rpc.stream('update.install', '[]', 1234, '<sha256 hex>', 567)  # 567 B compressed
# Steps of a call:
#  1. the name is looked up in _CALLS (run) or _STREAMS (stream): unknown -> bad_call;
#  2. the arguments must be the JSON text of a list: anything else -> bad_call;
#  3. the function's module is imported only now, so a call loads only what it needs;
#  4. the answer is one line, _MARK + JSON: {"ok": value}, or {"err": [reason, detail]} when
#     the agent refuses (GuardError). Any other exception propagates: the raw REPL reports it
#     as a device traceback (DeviceError on the host, traceback kept).
# stream() hands the function a guard.xfer.Reader(length, sha) and the length, then its
# arguments; with z, the wire is z bytes of compressed chunks whose digest is sha, and the
# function gets xfer.Z, the `length` inflated bytes (docs/decisions/0017); with a, the
# Reader reads ahead (acks are credits: docs/decisions/0018). A function that refuses (or
# returns) before reading everything aborts the transfer (NAK), so the link returns clean.
# A function in _WRITES answers a (long) string without holding it: it gets `out=` a stream
# whose writes become the answer's JSON string as they come ({"ok": "..."}, the same framing),
# so no copy of the answer must fit the heap in one piece. It writes only characters that need
# no JSON escaping (a JWS: base64url and dots) and refuses (GuardError) before its first write.
# Reasons: bad_call.
import json
import sys

from guard import GuardError

_MARK = "\x1eMPG:"

# name -> (module of the guard package, function)
_CALLS = {
    "info.facts": ("info", "facts"),
    "info.anchors": ("info", "anchors"),
    "fs.hashes": ("info", "hashes"),
    "update.status": ("state", "status"),
    "hw.board_kind": ("hw", "board_kind"),
    # device identity (guard.identity; docs/decisions/0012-identity.md)
    "identity.status": ("identity", "status"),
    "identity.begin": ("identity", "begin"),  # (entropy_b64u, force)
    "identity.csr": ("identity", "csr"),  # (challenge, pending)
    "identity.install": ("identity", "install"),  # (cert_b64u, [ca_b64u])
    "identity.certificate": ("identity", "certificate"),
    "attest.prepare": ("attest", "prepare"),  # (nonce) -> payload length; then attest.token
    "identity.proof": ("identity", "proof"),  # (challenge): old key signs the pending key
    # credential rotation (guard.rotate; docs/decisions/0016-rotation.md)
    "secret.status": ("rotate", "status"),
    "secret.command": ("rotate", "command"),  # (signed command JWS)
    "secret.test": ("rotate", "test"),  # (name): the app's test on the staged value
    "anchors.rotate": ("anchors", "rotate"),  # ([JWS, ...]): a trust-anchor statement
}
_STREAMS = {
    "update.install": ("install", "install"),  # install(stream, length)
}
_WRITES = {
    "attest.token": ("attest", "token"),  # token(nonce, out=stream) -> the EAT, written out
}


def _find(table, name):
    e = table.get(name) if type(name) is str else None
    if not e:
        raise GuardError("bad_call", str(name))
    return getattr(__import__("guard." + e[0], None, None, (e[1],)), e[1])


def _args(text):
    try:
        a = json.loads(text)
    except (TypeError, ValueError):
        a = None
    if type(a) is not list:
        raise GuardError("bad_call", "arguments")
    return a


def _say(key, v):
    # streamed: an answer never needs its whole JSON text in one piece of a used heap
    sys.stdout.write(_MARK)
    json.dump({key: v}, sys.stdout)
    sys.stdout.write("\n")


def _refuse(e):
    a = e.args
    d = a[1] if len(a) > 1 else None
    if d is not None and type(d) is not int and type(d) is not str:
        d = str(d)
    _say("err", [str(a[0]) if a else "refused", d])


class _Out:
    # the answer stream of a _WRITES function: the frame opens at the first write
    open = False  # (per instance once set)

    def write(self, s):
        if not self.open:
            self.open = True
            sys.stdout.write(_MARK + '{"ok":"')
        sys.stdout.write(s)


def run(name, args="[]"):
    w = _WRITES.get(name) if type(name) is str else None
    out = _Out() if w else None
    try:
        f = _find(_WRITES if w else _CALLS, name)
        v = f(*_args(args), out=out) if out else f(*_args(args))
    except GuardError as e:
        if out and out.open:
            raise  # a refusal after the answer began: report it as the device error it is
        _refuse(e)
        return
    if out:
        out.write("")
        print('"}')
        return
    _say("ok", v)


def stream(name, args, length, sha, z=0, a=0):
    from guard import xfer

    r = xfer.Reader(z or length, sha, ahead=a)
    try:
        f = _find(_STREAMS, name)
        v = f(xfer.Z(r, length) if z else r, length, *_args(args))
    except GuardError as e:
        r.abort()
        _refuse(e)
        return
    except Exception:
        r.abort()
        raise
    r.abort()  # no-op when everything was read
    _say("ok", v)
