"""What a verified token says, as the named facts the policy judges (docs/attest.md).

The board reports raw eFuse fields and measurements (guard.posture); here they are decoded
with the same board profile the board used (the `hwmodel` claim names its kind), by the
rules esptool and ESP-IDF apply. A fact keeps the board's status: ok (with its value),
unsupported, or unreadable - never a guess - and where it came from (`src`, a claim path).
A value of the wrong type or range (a text or a list where a number is, Infinity, NaN) is
unreadable: what a board signs is judged, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import boards, files
from ..errors import BoardProfileError
from .verify import CLAIM

CAUSES = {1: "power_on", 2: "hard", 3: "watchdog", 4: "deep_sleep", 5: "soft"}


@dataclass(frozen=True)
class Fact:
    status: str  # ok | unsupported | unreadable
    value: Any = None
    src: str = ""
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "src": self.src}
        if self.status == "ok":
            d["value"] = self.value
        if self.why:
            d["why"] = self.why
        return d


def _on(value: int, how: str | None) -> bool:
    if type(value) is not int:  # an eFuse field is a number: "0" must not read as set
        raise TypeError("not an integer")
    return bin(value).count("1") % 2 == 1 if how == "odd" else value != 0


_PROFILES: dict[str, dict[str, Any] | None] = {}


def profile_for(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The board profile the `hwmodel` claim names (read once per kind), or None."""
    hw = claims.get("hwmodel", "")
    if hw not in _PROFILES:
        try:
            _PROFILES[hw] = boards.load_profile(files.b64u_dec(hw).decode())
        except (ValueError, UnicodeDecodeError, BoardProfileError):
            _PROFILES[hw] = None
    return _PROFILES[hw]


def derive(claims: dict[str, Any]) -> dict[str, Fact]:
    """Every fact the default policy names, from the claims of a verified token."""
    p = claims[CLAIM]
    prof = profile_for(claims)
    spec = (prof or {}).get("efuse", {})
    out: dict[str, Fact] = {}

    def raw(name: str) -> dict[str, Any] | Fact:
        f = p.get(name) or {"s": "unsupported"}
        src = f"{CLAIM}.{name}"
        if f["s"] != "ok":
            return Fact(f["s"], None, src, f.get("why", ""))
        if name in spec or name not in _EFUSE:
            return f["v"]
        return Fact("unsupported", None, src, "no board profile for this hwmodel")

    def put(key: str, name: str, fn: Any) -> None:
        v = raw(name)
        src = f"{CLAIM}.{name}"
        if isinstance(v, Fact):
            out[key] = v
            return
        try:
            out[key] = Fact("ok", fn(v), src)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError):
            # ArithmeticError: int() of Infinity (json.loads reads 1e400 as it); AttributeError:
            # a list where a table is
            out[key] = Fact("unreadable", None, src, "malformed")

    def bits(fact: str, v: dict[str, int]) -> list[tuple[str, bool]]:
        return [(f.get("on"), _on(v[f["field"]], f.get("on"))) for f in spec[fact]["fields"]]

    put("secure_boot", "secure_boot", lambda v: any(x for _, x in bits("secure_boot", v)))

    def crypt(v: dict[str, int]) -> str:
        f = spec["flash_encryption"]["fields"][0]
        cnt = v[f["field"]]
        if not _on(cnt, "odd"):
            return "off"
        kp = p.get("key_protect", {})
        bit = spec["flash_encryption"].get("wr_dis_bit")
        locked = cnt == (1 << f["width"]) - 1  # a full counter cannot change (ESP-IDF)
        if kp.get("s") == "ok" and bit is not None:
            locked = locked or bool((kp["v"]["WR_DIS"] >> bit) & 1)
        elif not locked:
            raise ValueError("write protection unknown")
        return "release" if locked else "development"

    put("flash_encryption", "flash_encryption", crypt)
    fe, pe = out["flash_encryption"], p.get("partition_encrypted", {})
    if fe.status == "ok" and pe.get("s") == "ok" and not isinstance(pe["v"], bool):
        # a boolean only: bool("false") is True
        out["flash_encryption_consistent"] = Fact(
            "unreadable", None, f"{CLAIM}.partition_encrypted", "malformed")
    elif fe.status == "ok" and pe.get("s") == "ok":
        out["flash_encryption_consistent"] = Fact(
            "ok", (fe.value != "off") == pe["v"], f"{CLAIM}.partition_encrypted")
    else:
        out["flash_encryption_consistent"] = Fact("unsupported", None, f"{CLAIM}.partition_encrypted")

    def jtag(v: dict[str, int]) -> str:
        b = bits("jtag_disable", v)
        hard = [x for h, x in b if h == "set"]
        if hard and all(hard):
            return "disabled-permanently"
        if any(x for h, x in b if h == "odd"):
            return "disabled-soft"
        return "partial" if any(hard) else "enabled"

    put("jtag", "jtag_disable", jtag)

    def dl(v: dict[str, int]) -> str:
        b = [x for _, x in bits("uart_download_disable", v)]
        return "disabled" if b[0] else "secure" if any(b) else "enabled"

    put("uart_download", "uart_download_disable", dl)
    put("secure_version", "secure_version", lambda v: sum(bin(x).count("1") for x in v.values()))
    put("key_read_protect", "key_protect", lambda v: v["RD_DIS"])
    dbg = claims.get("dbgstat")
    out["dbgstat"] = Fact("ok", dbg, "dbgstat") if dbg else Fact("unsupported", None, "dbgstat")
    put("webrepl_password", "webrepl", lambda v: v["password"])
    put("webrepl_running", "webrepl", lambda v: bool(v["running"] or v["in_boot"]))
    put("repl_uart", "repl_uart", bool)
    put("wifi_ap_open", "wifi_ap", lambda v: bool(v["ap_active"] and v["ap_open"]))
    put("credentials_factory", "credentials", lambda v: v["factory"])
    put("app_integrity", "app", lambda v: v["result"])
    put("agent_integrity", "agent", lambda v: v["result"])
    put("update_last", "update", lambda v: v["last"] or "none")
    put("update_trial", "update", lambda v: bool(v["trial"]))
    put("update_seq", "update", lambda v: _int(v["seq"]))
    put("anchors", "anchors", len)
    put("anchors_pin", "anchors_pin", str)  # unpinned | match | mismatch (guard.pin)
    put("micropython", "micropython", lambda v: v["version"])
    put("reset_cause", "reset_cause", lambda v: CAUSES.get(_int(v), "other"))
    put("flash_free", "flash", lambda v: _int(v["free"]))
    put("heap_free", "heap", lambda v: _int(v["free"]))
    return out


def _int(v: Any) -> int:
    # a count: a number (a float is cut to its integer part, as before); not a bool or a
    # text, and not NaN or Infinity (int() raises ValueError / OverflowError on those)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError("not a number")
    return int(v)


# The facts derive() gives, in its order: the names a policy rule may judge (mpguard.attest.policy
# refuses a rule naming another).
FACTS = ("secure_boot", "flash_encryption", "flash_encryption_consistent", "jtag",
         "uart_download", "secure_version", "key_read_protect", "dbgstat", "webrepl_password",
         "webrepl_running", "repl_uart", "wifi_ap_open", "credentials_factory",
         "app_integrity", "agent_integrity", "update_last", "update_trial", "update_seq",
         "anchors", "anchors_pin", "micropython", "reset_cause", "flash_free", "heap_free")

_EFUSE = ("secure_boot", "flash_encryption", "jtag_disable", "uart_download_disable",
          "key_protect", "secure_version", "key_purpose")
