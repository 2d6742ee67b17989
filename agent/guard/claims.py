# guard.claims: the claims of the board's Entity Attestation Token (RFC 9711, JWT form) from
# its posture facts (guard.posture), serialised as they are measured. Loaded for one token,
# then unloaded again (guard.attest): the heap holds the measuring or the signing, not both.
# Claims (RFC 9711 section): eat_nonce 4.1; ueid 4.2.1 (base64url of type byte + id);
# oemid 4.2.3 (where /mpguard/attest.json configures one: an IANA PEN, or base64url of a
# 3-byte OUI or 16 random bytes); hwmodel 4.2.4 (base64url of the board kind); swname 4.2.6
# / swversion 4.2.7 (the confirmed app; the agent and MicroPython as submods 4.2.18); oemboot
# 4.2.8 (secure-boot eFuses); dbgstat 4.2.9 (JTAG eFuses; "fully" also needs download mode
# off and no UART REPL); uptime 4.2.11; bootcount 4.2.12; measurements 4.2.16 ([50 = CoAP
# application/json, base64url body]); measres 4.2.17; iat 4.3.1 (while the clock is set);
# eat_profile 4.3.2. Posture facts: the private claim "mpguard_posture". A claim the board
# cannot measure is left out, never guessed.
# Reasons: bad_config (the oemid in /mpguard/attest.json).
import json

# const() is folded by MicroPython's compiler itself: no `from micropython import const`
# (the import would cost 17 bytes of .mpy in each module)

from guard import VERSION, GuardError
from guard.attest import B64U, b64u

_PROFILE = const("tag:mpguard.invalid,2025:eat-profile:1")
_CLAIM = const(b'"mpguard_posture":{')  # the private claim of the posture facts, opened
_CONFIG = const("/mpguard/attest.json")
_JSON = const(50)  # CoAP content-format application/json
_MULTI = const(1)  # version-scheme multipartnumeric (RFC 9393)
_KEEP = const(("secure_boot", "jtag_disable", "uart_download_disable", "repl_uart", "app", "agent",
               "micropython"))


def _dumps(v):
    return json.dumps(v, separators=(",", ":"))


def _pair(k, v):
    # one member of a JSON object, as bytes: "k":v
    return ('"%s":%s' % (k, _dumps(v))).encode()


def _oemid():
    # RFC 9711 4.2.3: an IANA PEN (integer), or base64url of a 3-byte OUI or 16 random bytes.
    try:
        with open(_CONFIG) as f:
            v = json.load(f).get("oemid")
    except OSError:
        return None
    except (ValueError, AttributeError):
        raise GuardError("bad_config")
    # (strip leaves nothing iff every character is base64url)
    if v is None or (type(v) is int and v >= 0) or (type(v) is str and len(v) in (4, 22)
                                                    and not v.encode().strip(B64U)):
        return v
    raise GuardError("bad_config", "oemid")


def _on(p, spec, fact):
    # [(how, set?)] per eFuse field of a fact (the profile's "on": set, odd, ...), or None.
    f = p[fact]
    if f["s"] != "ok":
        return None
    out = []
    for s in spec[fact]["fields"]:
        h = s.get("on")
        v = f["v"][s["field"]]
        out.append((h, bin(v).count("1") & 1 == 1 if h == "odd" else v != 0))
    return out


def _dbgstat(p, spec):
    j = _on(p, spec, "jtag_disable")
    if j is None:
        return None
    if ("set", True) in j and ("set", False) not in j:  # every "set" field burned (one at least)
        u = _on(p, spec, "uart_download_disable")
        r = p["repl_uart"]
        full = u and u[0][1] and r["s"] == "ok" and r["v"] is False
        return "disabled-fully-and-permanently" if full else "disabled-permanently"
    return "disabled" if ("odd", True) in j else "enabled"


def _measure(ms, rs, name, f, extra):
    v = f.get("v") or {}
    res = v.get("result") if f["s"] == "ok" else "not-run"
    if res != "absent":
        body = {"name": name, "digest": v.get("digest")}
        body.update(extra)
        ms.append([_JSON, b64u(_dumps(body).encode()).decode()])
    rs.append([name, res])


def claims(nonce, ueid):
    # The claims as JSON in small pieces (bytes, to be joined by ","): no large contiguous
    # allocation; posture facts are serialised one by one as they are measured.
    from guard import hw, posture

    p = {}  # type: dict
    parts = []
    for k, f in posture.facts(p):
        if k in _KEEP:
            p[k] = f
        if k in ("app", "agent") and "digest" in f.get("v", ()):
            f = {"s": "ok", "v": dict(f["v"])}
            del f["v"]["digest"]  # it is in the measurements claim
        parts.append(_pair(k, f))
    parts[0] = _CLAIM + parts[0]
    parts[-1] += b"}}"
    head = []

    def add(k, v):
        if v is not None:
            head.append(_pair(k, v))

    st = p["st"]
    add("eat_profile", _PROFILE)
    add("eat_nonce", nonce)
    add("ueid", b64u(ueid).decode())
    add("oemid", _oemid())
    try:
        prof = hw.board() or {}
    except GuardError:
        prof = {}  # the eFuse facts say bad_profile; the claims from them are left out
    spec = prof.get("efuse") or {}
    if prof.get("kind"):
        add("hwmodel", b64u(prof["kind"].encode()).decode())
    if st and st["app"]:
        add("swname", st["app"])
        add("swversion", [st["ver"]])
    v = _on(p, spec, "secure_boot")
    add("oemboot", any(x for _, x in v) if v else None)
    add("dbgstat", _dbgstat(p, spec))
    add("uptime", hw.uptime())
    add("bootcount", hw.boot_count())
    add("iat", hw.now())
    ms = []  # type: list
    rs = []  # type: list
    if st:
        _measure(ms, rs, "app", p["app"], {"manifest": st["digest"], "ver": st["ver"], "seq": st["seq"]})
    _measure(ms, rs, "agent", p["agent"], {"ver": VERSION})
    add("measurements", ms or None)
    add("measres", [["mpguard", rs]])
    mp = p["micropython"]["v"]["version"]  # as posture measured it
    add("submods", {"agent": {"swname": "mpguard-agent", "swversion": [VERSION, _MULTI]},
                    "micropython": {"swname": "MicroPython", "swversion": [mp, _MULTI]}})
    head[0] = b"{" + head[0]
    return head + parts
