"""`mpguard fuse harden`: a plan of eFuse burns, shown as a dry run, burned only on request.

In order:
1. espefuse reads the chip (mpguard.fuse.status); the profile's choices (fuse/profiles.py)
   become steps, each with what becomes irreversible. A step already true on this chip is
   marked done and is never burned again. Refusals come here, before anything is burned:
   a pin block that holds other bits (`pin_conflict`), a chip that cannot do a choice
   (`fuse_unsupported`), bad choices (`bad_fuse_profile`);
2. the dry run: every step, and the one espefuse command that would run, exactly;
3. `burn(plan, confirmed=True)` only: the command runs (espefuse --do-not-confirm: the
   confirmation is mpguard's flag), then espefuse reads the chip again and every step must
   show (`burn_mismatch` otherwise). In secure download mode a real chip cannot be read back:
   its attestation is the check then.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import boards
from ..errors import FuseError
from . import espefuse, profiles
from .espefuse import Target
from .profiles import Options
from .status import FuseStatus, block_bytes, read_board_anchors, status, status_from

CONFIRM_FLAG = "--i-understand-this-is-irreversible"


@dataclass
class Step:
    fact: str  # anchors_pin, anchors_pin_lock, flash_encryption, secure_boot, jtag, uart_download
    what: str
    effect: str  # what becomes irreversible
    args: list[str] = field(default_factory=list)  # espefuse sub-command and its arguments
    done: bool = False  # already so on this chip: not burned (again)


@dataclass
class Plan:
    target: Target
    profile: str
    options: Options
    before: FuseStatus
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # data files the command names

    @property
    def pending(self) -> list[Step]:
        return [s for s in self.steps if not s.done]

    def argv(self) -> list[str] | None:
        """The one espefuse command of the pending steps (burn-efuse fields merged). espefuse
        batches them: every block is burned at the end of the run, BLOCK0 last."""
        if not self.pending:
            return None
        args: list[str] = []
        fields: list[str] = []
        protect: list[str] = []
        for s in self.pending:
            if s.args[0] == "burn-efuse":
                fields += s.args[1:]
            elif s.args[0] == "write-protect-efuse":
                protect += s.args[1:]
            else:
                args += s.args
        if fields:
            args += ["burn-efuse", *fields]
        if protect:  # last: espefuse 5.6 misreads a burn-efuse that follows it in one run
            args += ["write-protect-efuse", *protect]
        return espefuse.command(self.target, "--do-not-confirm", *args)

    def as_dict(self) -> dict[str, Any]:
        argv = self.argv()
        return {"profile": self.profile, "chip": self.target.chip, "target": self.target.label,
                "options": {k: v if isinstance(v, bool) or v is None else str(v)
                            for k, v in asdict(self.options).items()},
                "steps": [asdict(s) for s in self.steps], "notes": self.notes,
                "command": espefuse.shell_line(argv) if argv else None,
                "files": {p: d.hex() for p, d in self.files.items()}}


def anchors_bytes(anchor_set: dict[str, Any]) -> bytes:
    """The canonical anchors file, byte for byte what `agent install` writes to the board
    (with the digests of the keys' comb tables, mpguard.anchortab)."""
    from ..agent.install import _anchors_file

    return _anchors_file(anchor_set)


def _locked_with(chip: str, bit: int) -> list[str]:
    return sorted({f.name for f in boards.all_fields(chip) if f.write_disable_bit == bit})


def _pin_steps(p: Plan, summ: dict[str, Any], anchors: bytes | None, workdir: Path) -> None:
    st, chip = p.before, p.target.chip
    spec = p.target.profile()["anchors_pin"]
    block = spec["block"]
    if anchors is None:
        raise FuseError("no_pin_anchors")
    if chip == "esp32" and int(str(summ.get("CODING_SCHEME", {}).get("raw_value", "0x0")), 16):
        raise FuseError("fuse_unsupported", "BLOCK3 uses the 3/4 coding scheme on this ESP32: "
                        "its pin words cannot be burned one by one")
    want = hashlib.sha256(anchors).digest()[: spec["bytes"]]
    have = bytes.fromhex(st.pin["digest"])
    if have == want:
        p.steps.append(Step("anchors_pin", f"the anchors' digest in {block}", "", done=True))
    elif any(have):
        raise FuseError("pin_conflict", f"{block} words {spec['words']} hold {have.hex()}, "
                        f"this project's pin is {want.hex()}")
    elif st.pin["locked"]:
        raise FuseError("fuse_unsupported", f"{block} is write-protected: no pin can be burned")
    else:
        data = bytearray(32)
        for i, w in enumerate(spec["words"]):
            data[4 * w : 4 * w + 4] = want[4 * i : 4 * i + 4]
        # one file per plan: boards of a station burn at the same time
        path = str(workdir / f"mpguard-pin-{want.hex()[:16]}-{secrets.token_hex(4)}.bin")
        p.files[path] = bytes(data)
        words = ", ".join(str(w) for w in spec["words"])
        p.steps.append(Step(
            "anchors_pin", f"burn the anchors' digest {want.hex()} into {block} words {words}",
            "this chip accepts only these trust anchors for ever: the agent refuses any other "
            "anchors file (anchors_pin); new anchors need a new chip",
            ["burn-block-data", block, path]))
    if p.options.pin_lock:
        also = [n for n in _locked_with(chip, int(spec["wr_dis_bit"])) if n != block]
        p.steps.append(Step(
            "anchors_pin_lock", f"write-protect {block}",
            f"no bit of {block} can be burned any more (so the pin cannot be extended); "
            f"this also locks {', '.join(also) or 'nothing else'}",
            ["write-protect-efuse", block], done=bool(st.pin["locked"])))


def _key_steps(p: Plan, summ: dict[str, Any]) -> None:
    chip, o = p.target.chip, p.options
    if o.flash_encryption == "chip":
        p.notes.append("flash encryption: the key is generated on the chip by the firmware's "
                       "bootloader at its first boot (nothing to burn here); "
                       + ("a virtual board has no bootloader: does not apply"
                          if p.target.virtual else "check it afterwards with `mpguard attest`"))
    if isinstance(o.flash_encryption, Path) or o.flash_encryption not in ("off", "chip"):
        key = str(o.flash_encryption)
        effect = ("the flash encryption key is burned read- and write-protected: nothing can "
                  "read it; the firmware's bootloader encrypts the flash with it at first boot")
        if chip == "esp32":
            done = _key_present(summ, profiles.ESP32_FE_BLOCK)
            p.steps.append(Step("flash_encryption", "burn the flash encryption key into BLOCK1",
                                effect, ["burn-key", "flash_encryption", key], done))
            p.steps.append(Step("flash_encryption", "burn FLASH_CRYPT_CONFIG = 0xF",
                                "flash encryption tweaks every address bit (ESP-IDF's setting)",
                                ["burn-efuse", "FLASH_CRYPT_CONFIG", "0xF"],
                                _raw(summ, "FLASH_CRYPT_CONFIG") == 0xF))
        else:
            blk = _purpose_block(summ, profiles.FE_PURPOSE)
            p.steps.append(Step("flash_encryption", f"burn the flash encryption key ({profiles.FE_PURPOSE})",
                                effect, ["burn-key", blk or _free_block(summ, p), key,
                                         profiles.FE_PURPOSE], blk is not None))
    if o.secure_boot != "off":
        pem = str(o.secure_boot)
        effect = ("the digest of this secure boot v2 public key is burned write-protected: the "
                  "bootloader of a firmware signed with its key enables secure boot at first "
                  "boot, after which only images signed with it boot")
        if chip == "esp32":
            p.steps.append(Step("secure_boot", "burn the secure boot v2 key digest into BLOCK2",
                                effect, ["burn-key-digest", pem],
                                _key_present(summ, profiles.ESP32_SB_BLOCK)))
        else:
            blk = _purpose_block(summ, profiles.SB_PURPOSE)
            p.steps.append(Step("secure_boot", f"burn the secure boot v2 key digest ({profiles.SB_PURPOSE})",
                                effect, ["burn-key-digest", blk or _free_block(summ, p), pem,
                                         profiles.SB_PURPOSE], blk is not None))


def _raw(summ: dict[str, Any], name: str) -> int:
    try:
        return int(str(summ[name]["raw_value"]), 16)
    except (KeyError, TypeError, ValueError):
        raise FuseError("espefuse_failed", f"the summary has no field {name}") from None


def _key_present(summ: dict[str, Any], block: str) -> bool:
    e = summ.get(block) or {}
    return not e.get("readable", True) or any(block_bytes(summ, block))


def _purpose_block(summ: dict[str, Any], purpose: str) -> str | None:
    for i, blk in enumerate(profiles.KEY_BLOCKS):
        if (summ.get(f"KEY_PURPOSE_{i}") or {}).get("value") == purpose:
            return blk
    return None


def _free_block(summ: dict[str, Any], p: Plan) -> str:
    taken = {a for s in p.pending for a in s.args}  # blocks the plan already burns
    for i, blk in enumerate(profiles.KEY_BLOCKS):
        if blk in taken:
            continue
        if (summ.get(f"KEY_PURPOSE_{i}") or {}).get("value") == "USER" and \
                (summ.get(blk) or {}).get("writeable") and not _key_present(summ, blk):
            return blk
    raise FuseError("fuse_unsupported", "no free key block left on this chip")


def plan(target: Target, profile: str, *, anchors: bytes | None = None,
         workdir: Path | None = None, board_anchors: bool = False, **choices: object) -> Plan:
    """What `profile` (with `choices` overriding it) would burn on `target` (nothing burned).
    `anchors`: the canonical anchors file to pin (anchors_bytes); `workdir`: where the data
    files the command names are written at the burn (the temp folder by default; removed
    after it). With `board_anchors`, a plan that pins first reads the anchors file the board
    holds (before espefuse resets a real board): other anchors than `anchors` are refused
    (`pin_board_mismatch`: the pin would make the board refuse every update it now accepts);
    a board that cannot be read is said in the plan's notes."""
    # bad choices are refused before espefuse reads (or resets) a chip that is known already
    opts = profiles.options(profile, target.chip, **choices) if target.chip != "auto" else None
    board: tuple[bytes | None, str] | None = None
    if anchors is not None and board_anchors and choices.get("pin", True) is not False:
        board = read_board_anchors(target)
        if board[0] is not None and board[0] != anchors:
            raise FuseError("pin_board_mismatch",
                            "the board holds other trust anchors than this project's: pinned "
                            "to the project's, it would refuse every update its own anchors "
                            "accept")
    summ, target = espefuse.summary(target)
    st = status_from(target, summ, anchors, board)
    if opts is None:  # the chip espefuse detected
        opts = profiles.options(profile, target.chip, **choices)
    p = Plan(target, profile, opts, st)
    if board is not None:
        p.notes.append("the board holds this project's anchors (/mpguard/anchors.json)"
                       if board[0] is not None else
                       f"the board's own anchors were not compared: {board[1]}")
    wd = workdir or Path(tempfile.gettempdir())
    if opts.pin:
        _pin_steps(p, summ, anchors, wd)
    _key_steps(p, summ)
    for b in profiles.burns(target.chip, opts):
        p.steps.append(Step(b.fact, f"burn {b.field} = {b.value}", b.effect,
                            ["burn-efuse", b.field, str(b.value)], _raw(summ, b.field) == b.value))
    return p


@dataclass
class Burned:
    burned: list[str]  # the steps' `what`
    command: str | None
    after: FuseStatus | None  # None: not read back (secure download mode on a real chip)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"burned": self.burned, "command": self.command, "seconds": round(self.seconds, 2),
                "after": self.after.as_dict() if self.after else None}


def burn(p: Plan, *, confirmed: bool, anchors: bytes | None = None) -> Burned:
    """Burn the plan's pending steps (only with `confirmed`), then read the chip back."""
    if not confirmed:
        raise FuseError("not_confirmed")
    t0 = time.monotonic()
    argv = p.argv()
    if argv is None:
        return Burned([], None, p.before, time.monotonic() - t0)
    for path, data in p.files.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    try:
        espefuse.run(argv)
    finally:
        for path in p.files:
            Path(path).unlink(missing_ok=True)
    done = [s.what for s in p.pending]
    if not p.target.virtual and any("ENABLE_SECURITY_DOWNLOAD" in s.args for s in p.pending):
        return Burned(done, espefuse.shell_line(argv), None, time.monotonic() - t0)
    after = status(p.target, anchors)
    check(p, after)
    return Burned(done, espefuse.shell_line(argv), after, time.monotonic() - t0)


def check(p: Plan, after: FuseStatus) -> None:
    """Every step of the plan shows on the chip (burn_mismatch otherwise)."""
    missing = []
    for s in p.steps:
        if s.fact == "anchors_pin" and after.pin["state"] not in ("match", "pinned"):
            missing.append(s.what)
        elif s.fact == "anchors_pin_lock" and not after.pin["locked"]:
            missing.append(s.what)
        elif s.args and s.args[0] == "burn-efuse" and s.fact in ("jtag", "uart_download"):
            field_, value = s.args[1], int(s.args[2], 0)
            raw = {k: v for fact in after.raw.values() for k, v in fact.items()}
            if field_ in raw and raw[field_] != value:
                missing.append(s.what)
    if missing:
        raise FuseError("burn_mismatch", "; ".join(missing))
