"""`mpguard fuse status`: espefuse's summary in the words of the board's attestation.

1. espefuse reads the chip (`summary --format json`: every field's raw value);
2. the raw values of the fields the board profile maps to posture facts are taken exactly as
   the agent reads them (guard.hw), so the two can be compared field by field;
3. they are decoded by the attestation's own code (mpguard.attest.facts.derive), so `jtag`,
   `uart_download`, `flash_encryption`, `secure_boot`... read the same words (enabled,
   disabled-permanently, release, ...) as an appraisal of the board's token;
4. the anchors pin (docs/fuse.md) is read from the user block: `unpinned`, or `match` /
   `mismatch` against the anchors file the board itself holds (/mpguard/anchors.json, read
   over the board's REPL: what guard.pin checks at every install and the attestation
   reports), else against the project's trust anchors (an eFuse file alone, or a board that
   cannot be read; `compared_with` says which), `pinned` when there are none to compare.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .. import files
from ..attest import facts as attest_facts
from ..attest.verify import CLAIM
from ..errors import FuseError
from .espefuse import Target, summary

# the facts of attestation that eFuses decide (mpguard.attest.facts), in report order
EFUSE_FACTS = ("secure_boot", "flash_encryption", "jtag", "uart_download", "secure_version",
               "key_read_protect")


@dataclass
class FuseStatus:
    target: Target
    raw: dict[str, dict[str, int]]  # posture fact -> {esptool field: raw value} (as guard.hw)
    facts: dict[str, Any]  # attestation fact -> value, in attestation's words
    pin: dict[str, Any]  # block, words, bytes, state, digest (hex), locked
    fields: dict[str, Any] = field(default_factory=dict)  # espefuse's entries of those fields

    def as_dict(self) -> dict[str, Any]:
        return {"chip": self.target.chip, "board": self.target.kind, "target": self.target.label,
                "virtual": self.target.virtual, "facts": self.facts, "raw": self.raw,
                "anchors_pin": self.pin}


def _int(entry: dict[str, Any], name: str) -> int:
    try:
        return int(str(entry["raw_value"]), 16)
    except (KeyError, TypeError, ValueError):
        raise FuseError("espefuse_failed", f"the summary's {name} has no raw value") from None


def raw_facts(summ: dict[str, Any], profile: dict[str, Any]) -> dict[str, dict[str, int]]:
    """{posture fact: {field: raw value}} for every eFuse fact of the profile (guard.hw's view)."""
    out: dict[str, dict[str, int]] = {}
    for fact, spec in profile["efuse"].items():
        vals = {}
        for f in spec.get("fields") or [spec]:
            entry = summ.get(f["field"])
            if not isinstance(entry, dict):
                raise FuseError("espefuse_failed", f"the summary has no field {f['field']}")
            vals[f["field"]] = _int(entry, f["field"])
        out[fact] = vals
    return out


def block_bytes(summ: dict[str, Any], block: str) -> bytes:
    """The user block's bytes in block order (espefuse's `value`: "01 02 ...", byte 0 first)."""
    entry = summ.get(block)
    try:
        data = bytes.fromhex(str(entry["value"]).replace(" ", ""))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise FuseError("espefuse_failed", f"the summary has no readable {block}") from None
    if len(data) != 32:
        raise FuseError("espefuse_failed", f"{block} is {len(data)} bytes, not 32")
    return data


def pin_of(summ: dict[str, Any], profile: dict[str, Any]) -> bytes:
    """The anchors pin as burned: the pin's words of the user block, in order."""
    spec = profile["anchors_pin"]
    data = block_bytes(summ, spec["block"])
    return b"".join(data[4 * w : 4 * w + 4] for w in spec["words"])


def pin_state(pin: bytes, anchors: bytes | None) -> str:
    """unpinned | match | mismatch, as guard.pin says (`pinned` without anchors to compare)."""
    if not any(pin):
        return "unpinned"
    if anchors is None:
        return "pinned"
    return "match" if hashlib.sha256(anchors).digest()[: len(pin)] == pin else "mismatch"


def read_board_anchors(target: Target, timeout: float = 5.0) -> tuple[bytes | None, str]:
    """The anchors file the board on `target`'s port holds (/mpguard/anchors.json, as
    guard.pin reads it), or None and why not. Needs no agent: mpremote's file read. Like
    mpremote, it interrupts what the board runs (its app stops until the next reset)."""
    from ..agent.install import ANCHORS
    from ..errors import MpguardError
    from ..link import BoardLink

    if not target.port:
        return None, ("the virtual board is not running" if target.sim
                      else "no board: an eFuse file")
    try:
        with BoardLink(target.port, connect_timeout=timeout) as link:
            if not link.exists(ANCHORS):
                return None, f"the board has no anchors file ({ANCHORS})"
            return link.get(ANCHORS), ""
    except MpguardError as e:
        return None, f"the board's anchors file could not be read ({e})"


def decode(raw: dict[str, dict[str, int]], kind: str, pin: str) -> dict[str, Any]:
    """The attestation's facts from raw eFuse fields, by the attestation's own decoder."""
    claims = {"hwmodel": files.b64u_enc(kind.encode()),
              CLAIM: {k: {"s": "ok", "v": v} for k, v in raw.items()}}
    claims[CLAIM]["anchors_pin"] = {"s": "ok", "v": pin}
    derived = attest_facts.derive(claims)
    out = {}
    for name in (*EFUSE_FACTS, "anchors_pin"):
        f = derived[name]
        out[name] = f.value if f.status == "ok" else None
    return out


def status_from(target: Target, summ: dict[str, Any], anchors: bytes | None,
                board: tuple[bytes | None, str] | None = None) -> FuseStatus:
    """The posture of an espefuse summary already read (`target` with its chip resolved).
    `anchors`: the project's anchors file; `board`: the board's own (read_board_anchors), or
    None when not asked for. The pin is judged against the board's when it was read."""
    profile = target.profile()
    raw = raw_facts(summ, profile)
    spec = profile["anchors_pin"]
    pin = pin_of(summ, profile)
    wr_dis = _int(summ.get("WR_DIS") or {}, "WR_DIS")
    board_data, note = board if board is not None else (None, "")
    on_board = pin_state(pin, board_data) if board_data is not None else None
    of_project = pin_state(pin, anchors) if anchors is not None else None
    state = on_board or of_project or pin_state(pin, None)
    compared = "board" if on_board else "project" if of_project else None
    pin_info = {"block": spec["block"], "words": spec["words"], "bytes": spec["bytes"],
                "state": state, "digest": pin.hex(),
                "locked": bool((wr_dis >> int(spec["wr_dis_bit"])) & 1),
                "compared_with": compared, "board": on_board, "project": of_project,
                "note": note}
    names = {f["field"] for s in profile["efuse"].values() for f in s.get("fields") or [s]}
    fields = {n: summ[n] for n in sorted(names | {spec["block"], "WR_DIS"}) if n in summ}
    return FuseStatus(target, raw, decode(raw, target.kind, state), pin_info, fields)


def status(target: Target, anchors: bytes | None = None, *,
           board_anchors: bool = False) -> FuseStatus:
    """The chip's eFuse posture; `anchors` (the project's canonical anchors file) to judge the
    pin, and with `board_anchors` the anchors file the board holds, read first (before
    espefuse resets a real board into its ROM loader), which judges it when it can be read."""
    board = read_board_anchors(target) if board_anchors else None
    summ, target = summary(target)
    return status_from(target, summ, anchors, board)
