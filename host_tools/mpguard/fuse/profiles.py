"""Hardening profiles as data: what `mpguard fuse harden --profile P` burns on each chip family.

A profile is a set of choices (`Options`); what a choice burns on a chip is in `BURNS`, by
esptool's field names (checked against the installed esptool by tests/host/test_fuse.py).
docs/fuse.md shows the same tables.

| choice          | development | production                                  |
| --------------- | ----------- | ------------------------------------------- |
| jtag            | keep        | disable (every hard JTAG disable of the chip)|
| uart_download   | keep        | ESP32: disabled; S2/S3/C3: secure            |
| pin             | yes         | yes (the anchors' digest in the user block)  |
| pin_lock        | no          | yes (write-protect the user block)           |
| flash_encryption| off         | off, `chip`, or a key file (station / CLI)   |
| secure_boot     | off         | off, or a public key (station / CLI)         |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import FuseError

PROFILES = ("development", "production")
UART = ("keep", "secure", "disabled")


@dataclass(frozen=True)
class Burn:
    fact: str  # the attestation fact it changes (mpguard.attest.facts)
    field: str  # esptool's field name
    value: int
    effect: str  # what becomes irreversible, for the dry run


_NO_DEBUG = "no debugger can attach to the chip any more"
_JTAG = {
    "esp32": (Burn("jtag", "JTAG_DISABLE", 1, f"JTAG off for ever: {_NO_DEBUG}"),),
    "esp32s2": (Burn("jtag", "HARD_DIS_JTAG", 1, f"JTAG off for ever: {_NO_DEBUG}"),),
    "esp32s3": (Burn("jtag", "DIS_PAD_JTAG", 1, f"JTAG on the pads off for ever: {_NO_DEBUG}"),
                Burn("jtag", "DIS_USB_JTAG", 1, "JTAG over the USB port off for ever")),
    "esp32c3": (Burn("jtag", "DIS_PAD_JTAG", 1, f"JTAG on the pads off for ever: {_NO_DEBUG}"),
                Burn("jtag", "DIS_USB_JTAG", 1, "JTAG over the USB port off for ever")),
}
_DL_OFF = ("the ROM's UART download mode off for ever: esptool can no longer flash, read or "
           "burn this chip over the UART (updates only through the agent)")
_DL_SECURE = ("secure download mode for ever: esptool can still write flash, but nothing can "
              "read flash, memory or eFuses through the ROM any more (espefuse and `mpguard "
              "fuse status --port` stop working on this chip; its attestation still reports "
              "the eFuses)")
_UART = {
    "esp32": {"disabled": (Burn("uart_download", "UART_DOWNLOAD_DIS", 1,
                                _DL_OFF + " (ESP32 chip revision 3 and later)"),)},
    **{chip: {"disabled": (Burn("uart_download", "DIS_DOWNLOAD_MODE", 1, _DL_OFF),),
              "secure": (Burn("uart_download", "ENABLE_SECURITY_DOWNLOAD", 1, _DL_SECURE),)}
       for chip in ("esp32s2", "esp32s3", "esp32c3")},
}
# flash encryption (XTS-AES-128 on S2/S3/C3) and secure boot v2 digests: key blocks by chip
ESP32_FE_BLOCK, ESP32_SB_BLOCK = "BLOCK1", "BLOCK2"
KEY_BLOCKS = tuple(f"BLOCK_KEY{i}" for i in range(6))
FE_PURPOSE, SB_PURPOSE = "XTS_AES_128_KEY", "SECURE_BOOT_DIGEST0"


@dataclass(frozen=True)
class Options:
    jtag: str = "keep"  # keep | disable
    uart_download: str = "keep"  # keep | secure | disabled
    pin: bool = True  # burn the anchors' digest into the user block
    pin_lock: bool = False  # write-protect the user block after the pin
    flash_encryption: str | Path = "off"  # off | chip | a 32-byte key file
    secure_boot: str | Path = "off"  # off | an RSA-3072 public key (PEM) whose digest to burn


def options(profile: str, chip: str, **override: object) -> Options:
    """The choices of `profile` on `chip`, with `override` (a station file's, the CLI's)."""
    if profile not in PROFILES:
        raise FuseError("bad_fuse_profile", f"profile {profile!r}: one of {', '.join(PROFILES)}")
    if chip not in _JTAG:
        raise FuseError("fuse_unsupported", f"no hardening profile for chip {chip}")
    o = Options()
    if profile == "production":
        o = Options(jtag="disable", uart_download="disabled" if chip == "esp32" else "secure",
                    pin=True, pin_lock=True)
    o = replace(o, **{k: v for k, v in override.items() if v is not None})  # type: ignore[arg-type]
    if o.jtag not in ("keep", "disable"):
        raise FuseError("bad_fuse_profile", f"jtag = {o.jtag!r}: keep or disable")
    if o.uart_download not in UART:
        raise FuseError("bad_fuse_profile", f"uart_download = {o.uart_download!r}: "
                        f"one of {', '.join(UART)}")
    if o.uart_download != "keep" and o.uart_download not in _UART[chip]:
        raise FuseError("fuse_unsupported", f"{chip} has no {o.uart_download} download mode "
                        f"(choose {' or '.join(['keep', *_UART[chip]])})")
    if o.pin_lock and not o.pin:
        raise FuseError("bad_fuse_profile", "pin_lock needs pin")
    for name in ("flash_encryption", "secure_boot"):
        v = getattr(o, name)
        if isinstance(v, str) and v in ("off", "chip") and not (name == "secure_boot" and v == "chip"):
            continue
        if not Path(v).is_file():
            raise FuseError("bad_fuse_profile", f"{name} = {str(v)!r}: off"
                            f"{', chip' if name == 'flash_encryption' else ''} or a key file "
                            "that exists")
    if not isinstance(o.flash_encryption, str) or o.flash_encryption not in ("off", "chip"):
        if Path(o.flash_encryption).stat().st_size != 32:
            raise FuseError("bad_fuse_profile", "flash_encryption key file: 32 bytes (256 bits)")
    return o


def burns(chip: str, o: Options) -> list[Burn]:
    """The single-field burns of these choices on `chip`, in burn order (download mode last:
    in secure download mode nothing reads the chip's eFuses back)."""
    out: list[Burn] = []
    if o.jtag == "disable":
        out += _JTAG[chip]
    if o.uart_download != "keep":
        out += _UART[chip][o.uart_download]
    return out


def fields_of(chip: str) -> set[str]:
    """Every esptool field name the burns of any profile use on `chip` (checked by a test)."""
    names = {b.field for b in _JTAG[chip]}
    for group in _UART[chip].values():
        names |= {b.field for b in group}
    return names
