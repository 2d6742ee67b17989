"""guard.hw on the MicroPython unix port: the ESP32 path (a machine stand-in serving the words
of a real `espefuse --virt` file) and the `_simhw` path, against what espefuse reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpguard import boards, efuse

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")


def espefuse(path, chip, *args):
    cmd = [ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", chip, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def burned_file(tmp_path, kind, *name_values):
    """A real virtual chip with `name_values` burned; returns (words, espefuse's raw values)."""
    path = tmp_path / f"{kind}.bin"
    profile = boards.load_profile(kind)
    espefuse(path, profile["chip"], "--do-not-confirm", "burn-efuse", *name_values)
    out = tmp_path / "summary.json"
    espefuse(path, profile["chip"], "summary", "--format", "json", "--file", str(out))
    told = json.loads(out.read_text())
    expect = {
        fact: {f["field"]: int(told[f["field"]]["raw_value"], 16) for f in spec["fields"]}
        for fact, spec in profile["efuse"].items()
    }
    for fact in boards.FACTS:  # a fact the chip does not have is unknown (None)
        expect.setdefault(fact, None)
    return efuse.efuse_words(path, profile), expect


# A machine-like stand-in: mem32 serves eFuse words the way ESP32 MicroPython does (signed
# when bit 31 is set) and records every address read, so tests can prove nothing was read.
FAKE_MACHINE = """
import guard.hw as hw
class Mem:
    def __init__(self, words):
        self.words = words
        self.reads = []
    def __getitem__(self, addr):
        self.reads.append(addr)
        w = self.words.get(addr, 0)
        return w - 0x100000000 if w & 0x80000000 else w
class Machine:
    def __init__(self, words):
        self.mem32 = Mem(words)
        self.resets = 0
    def unique_id(self):
        return b'\\x24\\x0a\\xc4\\x01\\x02\\x03'
    def reset_cause(self):
        return 3
    def reset(self):
        self.resets += 1
M = Machine({int(k): v for k, v in IN['words'].items()})
hw.use(mach=M)
"""


def run_esp32(mp, code, words, **extra):
    data = {"words": {str(a): w for a, w in words.items()}, **extra}
    return mp.out(FAKE_MACHINE + code, data)


@pytest.mark.parametrize("kind, burns", [
    ("esp32", ["JTAG_DISABLE", "1", "FLASH_CRYPT_CNT", "5", "ABS_DONE_1", "1"]),
    ("esp32", ["UART_DOWNLOAD_DIS", "1", "FLASH_CRYPT_CNT", "127"]),
    ("esp32c3", ["SPI_BOOT_CRYPT_CNT", "7", "SOFT_DIS_JTAG", "3", "DIS_DOWNLOAD_MODE", "1"]),
    ("esp32c3", ["SECURE_BOOT_EN", "1", "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1"]),
    ("esp32s3", ["SECURE_BOOT_EN", "1", "SOFT_DIS_JTAG", "1"]),
])
def test_esp32_path_reads_what_espefuse_burned(mp, tmp_path, kind, burns):
    words, expect = burned_file(tmp_path, kind, *burns)
    assert any(v for fact in expect.values() for v in fact.values())
    got = run_esp32(mp, "OUT([hw.efuse_facts(IN['p']), sorted(set(M.mem32.reads))])",
                    words, p=boards.load_profile(kind))
    assert got[0] == expect
    fields = {int(f["addr"]) for f in efuse.profile_fields(boards.load_profile(kind))}
    assert sorted(got[1]) == sorted(fields)  # only the profile's eFuse fields were read


def test_mem32_is_unsigned_even_when_machine_returns_signed(mp):
    got = run_esp32(mp, "OUT([hw.mem32(0x3FF5A000), hw.mem32(0x3FF5A018)])",
                    {0x3FF5A000: 0xF8000000, 0x3FF5A018: 0x40})
    assert got == [0xF8000000, 0x40]


def test_single_field_fact_without_fields_list(mp):
    p = boards.load_profile("esp32")
    spec = p["efuse"]["jtag_disable"]
    p["efuse"]["jtag_disable"] = {k: spec[k] for k in ("field", "addr", "bit", "width")}
    got = run_esp32(mp, "OUT(hw.efuse('jtag_disable', IN['p']))", {0x3FF5A018: 0x40}, p=p)
    assert got == {"JTAG_DISABLE": 1}


def test_board_file_installed_next_to_agent(mp, tmp_path):
    (tmp_path / "board.json").write_text(json.dumps(boards.load_profile("esp32")))
    code = ("hw.BOARD_FILE = IN['file']\n"
            "OUT([hw.board_kind(), hw.efuse('jtag_disable'), hw.efuse('no_such_fact')])")
    got = run_esp32(mp, code, {0x3FF5A018: 0x40}, file=str(tmp_path / "board.json"))
    assert got == ["esp32", {"JTAG_DISABLE": 1}, None]


def test_missing_board_file_means_unknown_not_guessed(mp, tmp_path):
    code = ("hw.BOARD_FILE = IN['file']\n"
            "OUT([hw.board_kind(), hw.efuse_facts(), len(M.mem32.reads)])")
    got = run_esp32(mp, code, {0x3FF5A018: 0x40}, file=str(tmp_path / "absent.json"))
    assert got == [None, dict.fromkeys(boards.FACTS), 0]


def test_facts_a_profile_lacks_are_unknown(mp):
    p = boards.load_profile("esp32")
    del p["efuse"]["secure_boot"]
    got = run_esp32(mp, "OUT(hw.efuse_facts(IN['p']))", {0x3FF5A018: 0x40}, p=p)
    assert got["secure_boot"] is None and got["jtag_disable"] == {"JTAG_DISABLE": 1}


def test_malformed_board_file_is_a_clear_error(mp, tmp_path):
    (tmp_path / "board.json").write_text("{not json")
    code = ("hw.BOARD_FILE = IN['file']\n"
            "try:\n    hw.efuse_facts()\n    OUT('read')\n"
            "except Exception as e:\n    OUT([type(e).__name__, e.args[0]])")
    got = run_esp32(mp, code, {}, file=str(tmp_path / "board.json"))
    assert got == ["GuardError", "bad_profile"]


def _bad(p, **change):
    p = json.loads(json.dumps(p))
    p["efuse"]["jtag_disable"]["fields"][0].update(change)
    return p


ESP32 = boards.load_profile("esp32")
BAD_PROFILES = [
    ("address past the eFuse registers", _bad(ESP32, addr=0x3FF5A000 + 0x11C + 4)),
    ("address below the eFuse registers", _bad(ESP32, addr=0x3FF59FFC)),
    ("address far away (flash cache)", _bad(ESP32, addr=0x400D0000)),
    ("unaligned address", _bad(ESP32, addr=0x3FF5A019)),
    ("field past bit 31", _bad(ESP32, bit=31, width=2)),
    ("zero width", _bad(ESP32, width=0)),
    ("negative bit", _bad(ESP32, bit=-1)),
    ("address as text", _bad(ESP32, addr="0x3FF5A018")),
    ("no eFuse window", {k: v for k, v in ESP32.items() if k != "efuse_regs"}),
    ("fact is not a map", {**ESP32, "efuse": {**ESP32["efuse"], "jtag_disable": [1, 2]}}),
]


@pytest.mark.parametrize("name, profile", BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_bad_efuse_map_is_refused_before_any_read(mp, name, profile):
    code = ("try:\n    hw.efuse('jtag_disable', IN['p'])\n    OUT('read')\n"
            "except Exception as e:\n    OUT([type(e).__name__, e.args[0], len(M.mem32.reads)])")
    got = run_esp32(mp, code, {0x3FF5A018: 0x40}, p=profile)
    assert got == ["GuardError", "bad_profile", 0]


def test_identity_reset_cause_and_reset_on_esp32_path(mp):
    code = ("hw.reset()\n"
            "OUT([hw.unique_id().hex(), hw.reset_cause(), M.resets, hw.flash_stats()])")
    assert run_esp32(mp, code, {}) == ["240ac4010203", 3, 1, None]


FAKE_NETWORK = """
class WLAN:
    def __init__(self, i):
        self.i = i
    def active(self):
        return IN['ap_on'] if self.i == 1 else True
    def config(self, what):
        if what != 'security':
            raise ValueError(what)
        return IN['sec']
    def isconnected(self):
        return self.i == 0 and IN['sta']
class Net:
    AP_IF = 1
    STA_IF = 0
    WLAN = WLAN
hw.use(mach=M, net=Net)
OUT(hw.net_facts())
"""


@pytest.mark.parametrize("ap_on, sec, sta, facts", [
    (True, 0, False, {"ap_active": True, "ap_open": True, "sta_connected": False}),
    (True, 3, True, {"ap_active": True, "ap_open": False, "sta_connected": True}),
    (False, 0, True, {"ap_active": False, "ap_open": False, "sta_connected": True}),
])
def test_net_facts_on_esp32_path(mp, ap_on, sec, sta, facts):
    assert run_esp32(mp, FAKE_NETWORK, {}, ap_on=ap_on, sec=sec, sta=sta) == facts


# The `_simhw` module of the virtual board (API in docs/decisions/0001-interfaces.md), as a
# tiny file on the device's sys.path: guard.hw must pick it up by itself at import.
FAKE_SIMHW = """
import json
with open(%r) as f:
    _S = json.load(f)
_W = {int(k): v for k, v in _S['words'].items()}
RESETS = []
def efuse_word(addr):
    return _W.get(addr, 0)
def unique_id():
    return b'\\x02\\x00\\x00\\x00\\x00\\x07'
def reset():
    RESETS.append(1)
def reset_cause():
    return 5
def board():
    return _S['board']
def net():
    return {'ap_active': True, 'ap_open': True, 'sta_connected': False}
def flash_stats():
    return {'writes': 3, 'erases': 1, 'reads': 9}
"""


def test_simhw_path_is_picked_at_import_and_agrees_with_espefuse(mp, tmp_path):
    words, expect = burned_file(tmp_path, "esp32", "JTAG_DISABLE", "1", "FLASH_CRYPT_CNT", "3")
    state = {"words": {str(a): w for a, w in words.items()}, "board": boards.load_profile("sim")}
    (tmp_path / "state.json").write_text(json.dumps(state))
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "_simhw.py").write_text(FAKE_SIMHW % str(tmp_path / "state.json"))
    code = ("import guard.hw as hw, _simhw\nhw.reset()\n"
            "OUT([hw.board_kind(), hw.efuse_facts(), hw.unique_id().hex(), hw.reset_cause(),"
            " hw.net_facts(), hw.flash_stats(), len(_simhw.RESETS)])")
    got = mp.out(code, path=[dev, AGENT])
    assert got == ["sim", expect, "020000000007", 5,
                   {"ap_active": True, "ap_open": True, "sta_connected": False},
                   {"writes": 3, "erases": 1, "reads": 9}, 1]
    assert expect["jtag_disable"] == {"JTAG_DISABLE": 1}
    assert expect["flash_encryption"] == {"FLASH_CRYPT_CNT": 3}


def test_without_simhw_the_machine_module_is_used(mp):
    got = mp.out("import guard.hw as hw, machine\nOUT([hw._sim is None, hw._mach is machine,"
                 " hw.flash_stats()])")
    assert got == [True, True, None]


def test_fresh_chip_reads_all_zero_under_the_heap(mp):
    got = run_esp32(mp, "import gc\ngc.collect()\nOUT(hw.efuse_facts(IN['p']))", {},
                    p=boards.load_profile("esp32c3"))
    assert got == {fact: {f["field"]: 0 for f in spec["fields"]}
                   for fact, spec in boards.load_profile("esp32c3")["efuse"].items()}
