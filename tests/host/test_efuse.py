"""eFuse words of `espefuse --virt` files agree with what the real espefuse reports."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard import boards, efuse
from mpguard.errors import EfuseError

ESPEFUSE = str(Path(sys.executable).parent / "espefuse")


def espefuse(path, chip, *args):
    cmd = [ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", chip, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def burn(path, chip, *name_values):
    espefuse(path, chip, "--do-not-confirm", "burn-efuse", *name_values)


def summary(path, chip, tmp_path):
    out = tmp_path / "summary.json"
    espefuse(path, chip, "summary", "--format", "json", "--file", str(out))
    return json.loads(out.read_text())


def assert_agrees_with_espefuse(path, kind, tmp_path):
    """Every field of the profile: our decode == espefuse's raw value. Returns our values."""
    profile = boards.load_profile(kind)
    words = efuse.efuse_words(path, profile)
    told = summary(path, profile["chip"], tmp_path)
    values = {}
    for spec in efuse.profile_fields(profile):
        ours = efuse.field_value(words, spec)
        assert ours == int(told[spec["field"]]["raw_value"], 16), spec["field"]
        values[spec["field"]] = ours
    # and the words themselves are what esptool's own emulator reads at those addresses
    emu_mod = importlib.import_module(f"espefuse.efuse.{profile['chip']}.emulate_efuse_controller")
    emu = emu_mod.EmulateEfuseController(str(path))
    for addr, word in words.items():
        assert emu.read_reg(addr) == word, hex(addr)
    return values


# (name, kind, burns) - each burn is one espefuse run; the listed fields must read nonzero.
BURNS = [
    ("esp32 JTAG disabled", "esp32", [["JTAG_DISABLE", "1"]]),
    ("esp32 flash encryption counter, multi-bit", "esp32", [["FLASH_CRYPT_CNT", "5"]]),
    ("esp32 download off, secure boot v1 and v2", "esp32",
     [["UART_DOWNLOAD_DIS", "1", "ABS_DONE_0", "1"], ["ABS_DONE_1", "1"]]),
    ("esp32c3 crypt counter and soft JTAG, multi-bit", "esp32c3",
     [["SPI_BOOT_CRYPT_CNT", "7", "SOFT_DIS_JTAG", "3"]]),
    ("esp32c3 secure boot, pad and USB JTAG, download off", "esp32c3",
     [["SECURE_BOOT_EN", "1", "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1"],
      ["DIS_DOWNLOAD_MODE", "1", "ENABLE_SECURITY_DOWNLOAD", "1"]]),
    ("esp32s2 hard JTAG off, crypt counter", "esp32s2",
     [["HARD_DIS_JTAG", "1", "SPI_BOOT_CRYPT_CNT", "1"]]),
    ("esp32s3 secure boot, soft JTAG, download off", "esp32s3",
     [["SECURE_BOOT_EN", "1", "SOFT_DIS_JTAG", "1", "DIS_DOWNLOAD_MODE", "1"]]),
]


@pytest.mark.parametrize("kind", sorted({b[1] for b in BURNS}))
def test_blank_chip_agrees_with_espefuse_summary(tmp_path, blank_chip, kind):
    # the blank every case of the next test starts from (the same file for a chip)
    path = blank_chip(boards.load_profile(kind)["chip"])
    fresh = assert_agrees_with_espefuse(path, kind, tmp_path)
    assert not any(fresh.values()), fresh


@pytest.mark.parametrize("name, kind, burns", BURNS, ids=[b[0] for b in BURNS])
def test_burned_fields_agree_with_espefuse_summary(tmp_path, blank_chip, name, kind, burns):
    profile = boards.load_profile(kind)
    chip = profile["chip"]
    path = blank_chip(chip, tmp_path / "efuse.bin")  # a fresh virtual chip (read as the test above)
    fresh = efuse.efuse_words(path, profile)
    assert not any(efuse.field_value(fresh, spec) for spec in efuse.profile_fields(profile))
    for args in burns:
        burn(path, chip, *args)
    values = assert_agrees_with_espefuse(path, kind, tmp_path)
    burned = {args[i]: int(args[i + 1]) for args in burns for i in range(0, len(args), 2)}
    for field, value in burned.items():
        assert values[field] == value, field
    for field, value in values.items():
        if field not in burned:
            assert value == 0, field


def test_fact_values_group_fields_by_fact(tmp_path):
    path = tmp_path / "efuse.bin"
    burn(path, "esp32", "JTAG_DISABLE", "1", "FLASH_CRYPT_CNT", "3")
    profile = boards.load_profile("sim")  # the virtual board uses the ESP32 map
    facts = efuse.fact_values(efuse.efuse_words(path, profile), profile)
    assert facts == {
        "secure_boot": {"ABS_DONE_0": 0, "ABS_DONE_1": 0},
        "flash_encryption": {"FLASH_CRYPT_CNT": 3},
        "jtag_disable": {"JTAG_DISABLE": 1},
        "uart_download_disable": {"UART_DOWNLOAD_DIS": 0},
        "key_protect": {"WR_DIS": 0, "RD_DIS": 0},
        "secure_version": {"SECURE_VERSION": 0},
    }


@pytest.fixture(scope="module")
def esp32_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("efuse") / "esp32.bin"
    burn(path, "esp32", "JTAG_DISABLE", "1")
    return path


def test_wrong_chip_file_is_refused(esp32_file):
    with pytest.raises(EfuseError, match="wrong --chip"):
        efuse.efuse_words(esp32_file, boards.load_profile("esp32c3"))


@pytest.mark.parametrize("name, mangle", [
    ("truncated", lambda b: b[:-1]),
    ("empty", lambda b: b""),
    ("one word too long", lambda b: b + b"\0\0\0\0"),
])
def test_bad_file_is_refused(tmp_path, esp32_file, name, mangle):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(mangle(esp32_file.read_bytes()))
    with pytest.raises(EfuseError):
        efuse.efuse_words(bad, boards.load_profile("esp32"))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(EfuseError, match="does not exist"):
        efuse.efuse_words(tmp_path / "nope.bin", boards.load_profile("esp32"))


BAD_SPECS = [
    ("no address", {"bit": 0, "width": 1}),
    ("address outside the eFuse window", {"addr": 0x3FF5A000 + 0x200, "bit": 0, "width": 1}),
    ("unaligned address", {"addr": 0x3FF5A001, "bit": 0, "width": 1}),
    ("below the window", {"addr": 0x3FF59FFC, "bit": 0, "width": 1}),
]


@pytest.mark.parametrize("name, spec", BAD_SPECS, ids=[s[0] for s in BAD_SPECS])
def test_bad_field_spec_in_profile_is_refused(esp32_file, name, spec):
    profile = boards.load_profile("esp32")
    profile["efuse"]["jtag_disable"]["fields"].append({"field": "X", **spec})
    with pytest.raises(EfuseError):
        efuse.efuse_words(esp32_file, profile)


@pytest.mark.parametrize("name, spec", [
    ("bit past the word", {"addr": 0x3FF5A018, "bit": 31, "width": 2}),
    ("zero width", {"addr": 0x3FF5A018, "bit": 0, "width": 0}),
    ("negative bit", {"addr": 0x3FF5A018, "bit": -1, "width": 1}),
    ("word not read", {"addr": 0x3FF5A004, "bit": 0, "width": 1}),
    ("not a number", {"addr": "x", "bit": 0, "width": 1}),
])
def test_bad_field_value_request_is_refused(esp32_file, name, spec):
    words = efuse.efuse_words(esp32_file, boards.load_profile("esp32"))
    with pytest.raises(EfuseError):
        efuse.field_value(words, spec)


def test_profile_without_regs_is_refused(esp32_file):
    profile = boards.load_profile("esp32")
    del profile["efuse_regs"]
    with pytest.raises(EfuseError, match="efuse_regs"):
        efuse.efuse_words(esp32_file, profile)
