# guard.install: install a signed bundle into a free app slot (the install path; the boot path
# is guard.boot, the state file guard.state). docs/decisions/0006-install.md.
#
# install(stream, length), in order; each module is loaded when its step comes and unloaded
# (if the install loaded it) when it is done, so the crypto modules, the parsed manifest and
# the file-writing code are never on the heap together:
#  1. anchors (/mpguard/anchors.json) are read                                  (no_anchors)
#     and must match a digest pinned in eFuse, if one is (guard.pin)            (anchors_pin)
#  2. guard.bundle reads the header and the manifest into one buffer (the only allocation that
#     grows with the bundle, at most 4 KiB, made first) and checks the signature
#  3. the board kind (guard.hw), the state (guard.state), the manifest parsed (guard.bundle)
#  4. guard.manifest checks the fields and the manifest against the board: target, sequence
#     above the highest accepted, jump, issue time, expiry, agent version, stream length.
#     Up to here a refusal changes nothing at all.
#  5. guard.slots writes the free slot (a, b or c: neither the confirmed one nor a trial) and
#     stores the verified manifest; nothing is carried over from the running app. Any failure
#     removes what it wrote: the confirmed app, a pending trial and the state stay.
#  6. one atomic state write makes the new slot the trial slot and raises the highest accepted
#     sequence (`hi`); only then is a trial it replaces removed (never cancel what runs before
#     its replacement is complete). The next boot runs it on trial (guard.boot); only
#     confirm() advances the confirmed sequence (ETSI EN 303 645 5.3).
# Any failure is a refusal with a reason, never an exception: MemoryError is no_memory, an
# OSError io_error, anything unexpected `internal` (KeyboardInterrupt, the host breaking off,
# still propagates after the clean-up).
# Reasons: no_anchors no_memory io_error internal, plus those of guard.bundle, guard.manifest,
# guard.pin (anchors_pin), guard.slots and guard.state.
from guard import GuardError

ANCHORS = "/mpguard/anchors.json"


def load_anchors():
    # /mpguard/anchors.json: {"v": 1, "keys": {kid: base64url(65-byte public key)}}, and
    # "tabs": {kid: base64url(SHA-256 of /mpguard/tab/<kid>)} for the keys with a comb
    # table: such a key is [public key, digest] (guard.jws checks the table). Read
    # without guard.jws, so the crypto modules load only for the signature check (and are
    # unloaded after it). Each key is checked for shape here and as a point by guard.p256.
    import json
    from binascii import a2b_base64

    try:
        with open(ANCHORS) as f:
            d = json.load(f)
        out = {}
        t = d.get("tabs", {})
        for k, v in d["keys"].items():
            b = a2b_base64(v.replace("-", "+").replace("_", "/") + "=" * (-len(v) % 4))
            if len(b) != 65 or b[0] != 4:
                raise ValueError
            out[k] = [b, t[k]] if k in t else b
        return out
    except Exception:  # missing, unreadable, malformed (also too deep for the heap)
        raise GuardError("no_anchors")


def _now():
    # Seconds since 1970, or None while the board's clock is not set (year < 2024): guard.hw's
    # clock, read while guard.hw is loaded for the board kind (tests replace this function).
    from guard.hw import now

    return now()


def _unload(keep):
    # Drop the agent's modules an install step loaded and no longer needs (not those loaded
    # before the install began): on a board their bytecode sits on the heap, and they load
    # again from flash when next needed. The crypto modules go right after the signature
    # check, so they and the parsed manifest are never on the heap together.
    import gc
    import sys

    import guard

    gone = []  # (sys.modules cannot change while it is iterated)
    for name in sys.modules:
        if name.startswith("guard.") and name not in keep and name != "guard.install":
            gone.append(name)
    for name in gone:
        del sys.modules[name]
        try:
            delattr(guard, name[6:])
        except AttributeError:
            pass
    gc.collect()  # the next step's modules load into a compact heap


def _install(stream, length):
    import sys

    # Step by step (also when the agent runs from source, on a board whose mpy version
    # differs: all its modules compiled at once do not fit a board's heap; in steps they do).
    keep = []
    for n in sys.modules:
        if n.startswith("guard."):
            keep.append(n)
    anchors = load_anchors()
    from guard import pin  # anchors that do not match the eFuse pin refuse (guard.pin): first,

    pin.check(ANCHORS)  # while the heap is clean (from source it compiles as the rest did)
    del pin
    _unload(keep)
    from guard import bundle

    buf, info = bundle.read(stream, length, anchors)  # also checks the signature
    anchors = None
    _unload(keep)
    from guard import hw

    kind = hw.board_kind()
    now = _now()
    del hw
    want = bundle.HDR_LEN + info[1]
    m = bundle.parse(buf, info)
    del bundle
    _unload(keep)
    # Then the field rules, the state and the slot writer, one at a time, the bundle reader
    # gone: from source, a compile's parse tree takes ~24 KB, and the crypto modules' compile
    # left their names (qstrs, never freed) scattered over the heap; the three compiled
    # together beside the reader failed a deploy in ~8 under load on the sim's profile.
    from guard import manifest

    want += manifest.check(m)  # header + manifest + files
    from guard import state

    st = state.load()
    app = state.APP
    manifest.check_context(m, want, length, kind, st, now)
    del manifest
    keep.append("guard.state")
    _unload(keep)
    from guard import slots

    slot = slots.write(st, app, m, info, buf, stream)
    buf = None
    st["trial"] = {
        "slot": slot, "seq": m["seq"], "app": m["app"], "ver": m["ver"], "digest": info[0],
        "iat": m["iat"], "confirm": m.get("confirm", 0), "boots": 0,
    }
    m = None
    t = st["trial"]
    st["hi"] = t["seq"]
    st["last"] = {"result": "installed", "seq": t["seq"], "app": t["app"], "ver": t["ver"]}
    state.save(st)
    try:
        slots.tidy(st, app)  # the trial this one replaced, if any
    except Exception:
        pass
    return {"status": "installed", "reason": None, "slot": slot, "seq": t["seq"]}


def install(stream, length):
    # Entry point of `mpguard deploy`: stream has readinto(buf); length is the bundle's size.
    # Always answers {"status": "installed"|"refused", "reason", ...}; the refusal is kept in
    # RAM only (state.refused): refused bundles never write flash.
    try:
        r = _install(stream, length)
    except GuardError as e:
        r = {"status": "refused", "reason": e.args[0]}
        if len(e.args) > 1:
            r["detail"] = e.args[1]
    except MemoryError:
        r = {"status": "refused", "reason": "no_memory"}
    except OSError:
        r = {"status": "refused", "reason": "io_error"}
    except Exception as e:
        r = {"status": "refused", "reason": "internal", "detail": type(e).__name__}
    from guard import state

    state.refused = r
    return r
