"""Board profiles: regenerated from the installed esptool and compared, never hand-kept."""

import json
import subprocess
import sys

import pytest
from esptool.targets import ESP32C3ROM, ESP32ROM, ESP32S2ROM, ESP32S3ROM

from mpguard import boards
from mpguard.errors import BoardProfileError

KINDS = ["esp32", "esp32c3", "esp32s2", "esp32s3", "sim"]
REQUIRED = {"kind", "chip", "heap_bytes", "flash_bytes", "block_size", "efuse_regs", "efuse",
            "esptool_version", "generated_by"}


def test_kinds():
    assert boards.profile_kinds() == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_committed_profile_equals_regenerated(kind):
    committed = (boards.boards_dir() / f"{kind}.json").read_text()
    assert committed == boards.dumps(boards.generate_profile(kind))
    assert boards.load_profile(kind) == json.loads(committed)


@pytest.mark.parametrize("kind", KINDS)
def test_profile_schema(kind):
    p = boards.load_profile(kind)
    assert REQUIRED <= set(p)
    assert p["kind"] == kind
    assert set(p["efuse"]) == set(boards.FACTS) - ({"key_purpose"} if p["chip"] == "esp32" else set())
    assert isinstance(p["efuse"]["flash_encryption"]["wr_dis_bit"], int)
    base, size = p["efuse_regs"]["base"], p["efuse_regs"]["size"]
    for fact, spec in p["efuse"].items():
        assert spec["fields"], fact
        first = spec["fields"][0]
        assert {k: spec[k] for k in ("field", "addr", "bit", "width")} == {
            k: first[k] for k in ("field", "addr", "bit", "width")}
        for f in spec["fields"]:
            assert base <= f["addr"] < base + size and f["addr"] % 4 == 0
            assert 0 <= f["bit"] and 1 <= f["width"] and f["bit"] + f["width"] <= 32
            assert f["on"] in ("set", "odd", "count", "raw")
    assert p["heap_bytes"] >= 32 * 1024 and p["flash_bytes"] >= 1024 * 1024
    assert p["block_size"] == 4096


def test_sim_uses_the_esp32_efuse_map():
    sim, esp32 = boards.load_profile("sim"), boards.load_profile("esp32")
    assert sim["chip"] == "esp32"
    assert sim["efuse"] == esp32["efuse"] and sim["efuse_regs"] == esp32["efuse_regs"]
    assert sim["heap_bytes"] == 64 * 1024 and sim["flash_bytes"] == 2 * 1024 * 1024


# Independent of espefuse's field tables: esptool's flasher classes carry their own register
# constants for the checks `esptool` itself makes (secure boot, flash encryption).
def _mask(spec):
    return ((1 << spec["width"]) - 1) << spec["bit"]


def _fields(kind, fact):
    return {f["field"]: f for f in boards.load_profile(kind)["efuse"][fact]["fields"]}


def test_esp32_addresses_agree_with_esptool_flasher_constants():
    sb = _fields("esp32", "secure_boot")
    assert sb["ABS_DONE_0"]["addr"] == ESP32ROM.EFUSE_RD_ABS_DONE_REG
    assert _mask(sb["ABS_DONE_0"]) == ESP32ROM.EFUSE_RD_ABS_DONE_0_MASK
    assert sb["ABS_DONE_1"]["addr"] == ESP32ROM.EFUSE_RD_ABS_DONE_REG
    assert _mask(sb["ABS_DONE_1"]) == ESP32ROM.EFUSE_RD_ABS_DONE_1_MASK
    fe = _fields("esp32", "flash_encryption")["FLASH_CRYPT_CNT"]
    assert fe["addr"] == ESP32ROM.EFUSE_SPI_BOOT_CRYPT_CNT_REG
    assert _mask(fe) == ESP32ROM.EFUSE_SPI_BOOT_CRYPT_CNT_MASK
    assert boards.load_profile("esp32")["efuse_regs"]["base"] == ESP32ROM.EFUSE_RD_REG_BASE


@pytest.mark.parametrize("kind, rom", [("esp32s2", ESP32S2ROM), ("esp32s3", ESP32S3ROM),
                                       ("esp32c3", ESP32C3ROM)])
def test_newer_chip_addresses_agree_with_esptool_flasher_constants(kind, rom):
    sb = _fields(kind, "secure_boot")["SECURE_BOOT_EN"]
    assert (sb["addr"], _mask(sb)) == (rom.EFUSE_SECURE_BOOT_EN_REG, rom.EFUSE_SECURE_BOOT_EN_MASK)
    fe = _fields(kind, "flash_encryption")["SPI_BOOT_CRYPT_CNT"]
    assert (fe["addr"], _mask(fe)) == (rom.EFUSE_SPI_BOOT_CRYPT_CNT_REG,
                                       rom.EFUSE_SPI_BOOT_CRYPT_CNT_MASK)
    assert boards.load_profile(kind)["efuse_regs"]["base"] == rom.EFUSE_BASE


def test_check_command_passes_then_detects_drift(tmp_path):
    cmd = [sys.executable, "-m", "mpguard.boards"]
    ok = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    boards.write_profiles(tmp_path)
    assert boards.drifted_profiles(tmp_path) == []
    p = json.loads((tmp_path / "esp32c3.json").read_text())
    p["efuse"]["jtag_disable"]["fields"][0]["bit"] += 1  # a hand edit
    (tmp_path / "esp32c3.json").write_text(boards.dumps(p))
    (tmp_path / "sim.json").unlink()
    bad = subprocess.run(cmd + ["--check", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "esp32c3" in bad.stderr and "sim" in bad.stderr and "esp32s3" not in bad.stderr


@pytest.mark.parametrize("kind", ["esp8266", "", "../esp32"])
def test_unknown_kind_is_refused(kind):
    with pytest.raises(BoardProfileError, match="unknown board kind"):
        boards.load_profile(kind)
    with pytest.raises(BoardProfileError, match="unknown board kind"):
        boards.generate_profile(kind)


@pytest.mark.parametrize("name, text", [
    ("not json", "{efuse"),
    ("wrong kind", json.dumps({"kind": "esp32s3", "efuse": {}})),
    ("no efuse map", json.dumps({"kind": "esp32"})),
    ("a list", "[]"),
])
def test_malformed_profile_is_refused(tmp_path, name, text):
    (tmp_path / "esp32.json").write_text(text)
    with pytest.raises(BoardProfileError):
        boards.load_profile("esp32", tmp_path)


def test_missing_profile_is_refused(tmp_path):
    with pytest.raises(BoardProfileError, match="missing"):
        boards.load_profile("esp32", tmp_path)


def test_field_esptool_lacks_is_refused():
    with pytest.raises(BoardProfileError, match="no eFuse field"):
        boards.field_spec("esp32", "NO_SUCH_FIELD")
    with pytest.raises(BoardProfileError, match="no eFuse definitions"):
        boards.chip_definitions("esp8266")


# The flash-encryption counter's write-protect bit, as ESP-IDF's eFuse tables name it
# (components/efuse/<chip>/esp_efuse_table.csv: WR_DIS.FLASH_CRYPT_CNT is bit 2 of WR_DIS on
# the ESP32, WR_DIS.SPI_BOOT_CRYPT_CNT bit 4 on the S2, S3 and C3): release mode needs it.
@pytest.mark.parametrize("kind, bit", [("esp32", 2), ("esp32s2", 4), ("esp32s3", 4),
                                       ("esp32c3", 4), ("sim", 2)])
def test_flash_crypt_counter_write_protect_bit(kind, bit):
    assert boards.load_profile(kind)["efuse"]["flash_encryption"]["wr_dis_bit"] == bit
