# guard.anchors: the trust-anchor statement (docs/rotate.md, decisions/0016-rotation.md), and
# the anchors' key sets as guard.rotate's commands read them. Apart from guard.rotate so that
# an agent installed as .py compiles only this on the board for a statement (guard.rotate's
# compile does not fit a 64 KiB heap beside the statement's tokens and guard.jws).
# rotate(tokens): JWS tokens (guard.jws) over one payload {"typ": "mpguard-anchors", "ver",
# "keys", "k", "ops", "tabs"}, in order; any refusal changes nothing:
#  1. 1..8 tokens, each by a distinct current anchor of "keys", one payload (bad_statement),
#     at least the current "k" of them (threshold)
#  2. "ver" above the board's (anchors_rollback), a non-empty key set (no_keys), kids =
#     thumbprints of keys and ops, 0 < k <= len(keys) (bad_statement)
#  3. "tabs": the comb table of a key is kept only when its file is there with that digest
#     (guard.jws.table): a table named but missing would refuse every update (bad_table)
#  4. anchors pinned in eFuse (guard.pin) are never replaced (anchors_pin)
#  5. one atomic write of /mpguard/anchors.json (guard.store)
# load(name): (anchors.json, the public keys of its member name: "keys" or "ops"); anchors
#   that do not match a pin burned in eFuse are refused (anchors_pin), as guard.install does.
# Reasons: no_anchors bad_statement threshold anchors_rollback no_keys anchors_pin, plus
# guard.jws's.
import json

from guard import GuardError, store

_ANCHORS = const("anchors.json")  # in /mpguard, as guard.install.ANCHORS
_MAX_CMD = const(4096)


def _keys(m):
    from guard import jws

    out = {}
    for k, v in m.items():  # (not a dict: AttributeError, for the caller)
        out[k] = jws.b64u_dec(v)
    return out


def load(name):
    # no_anchors when the file or its member is missing or malformed; anchors_pin when the
    # chip's eFuse pin names other anchors (guard.pin): a swapped file's keys are not trusted
    import sys

    had = "guard.pin" in sys.modules
    from guard import pin

    try:
        with open("/mpguard/" + _ANCHORS, "rb") as f:
            d = f.read()
        a = json.loads(d)
        k = _keys(a[name])
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        raise GuardError("no_anchors")
    s = pin.state(d)
    if not had:  # its code leaves the heap again (a secret command has little room)
        del sys.modules["guard.pin"]
        del sys.modules["guard"].__dict__["pin"]
    if s == "mismatch":
        raise GuardError("anchors_pin")
    return a, k


def rotate(tokens):
    # returns the new kids, sorted. guard.pin (and guard.hw) load first, while the heap is
    # whole: from .py they compile, which after the signatures' big numbers may not fit
    from guard import pin
    from guard import jws

    a, cur = load("keys")
    if type(tokens) is not list or not 0 < len(tokens) <= 8:
        raise GuardError("bad_statement")
    body = None
    kids = []
    for t in tokens:
        h, b = jws.verify(t, cur, _MAX_CMD)
        if (body is not None and b != body) or h["kid"] in kids:
            raise GuardError("bad_statement")
        body = b
        kids.append(h["kid"])
    if body is None or len(kids) < max(1, a.get("k", 1)):
        raise GuardError("threshold")
    try:
        s = json.loads(body)
        ver, keys, k, ops = s["ver"], s["keys"], s["k"], s.get("ops", a.get("ops", {}))
        if s["typ"] != "mpguard-anchors" or type(ver) is not int:
            raise ValueError
        if ver <= a.get("ver", 0):
            raise GuardError("anchors_rollback")
        if not keys:
            raise GuardError("no_keys")
        for m in (keys, ops):
            for kid, pub in _keys(m).items():
                if jws.thumbprint(pub) != kid:
                    raise ValueError
        if type(k) is not int or not 0 < k <= len(keys):
            raise ValueError
        t = s.get("tabs", {})
        t = {i: t[i] for i in keys if i in t and jws.table(i, t[i])}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise GuardError("bad_statement")
    d = json.dumps({"v": 1, "ver": ver, "k": k, "keys": keys, "ops": ops, "tabs": t}).encode()
    if pin.state(d) == "mismatch":  # anchors pinned in eFuse stay (else every update refuses)
        raise GuardError("anchors_pin")
    store.write(_ANCHORS, (d,))
    return sorted(keys)
