"""mpguard.fuse on real virtual chips (`espefuse --virt` files in tmp folders, never a port):
status agrees with espefuse's own summary, the dry run burns nothing, burns need the flag,
a burned step is never burned again, and bad input is refused by name with the chip unchanged."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mpguard import boards, cli, fuse, project, reasons
from mpguard.agent import install as agent_install
from mpguard.errors import FuseError
from mpguard.fuse import profiles

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
ESPEFUSE = str(Path(sys.executable).parent / "espefuse")
CHIPS = ["esp32", "esp32s2", "esp32s3", "esp32c3"]
ANCHORS = fuse.anchors_bytes({"v": 1, "keys": {"k1": "A" * 87}})
OTHER = fuse.anchors_bytes({"v": 1, "keys": {"k2": "B" * 87}})


def summary(path: Path, chip: str) -> dict:
    out = path.with_suffix(".json")
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", chip,
                    "summary", "--format", "json", "--file", str(out)],
                   check=True, capture_output=True, timeout=120)
    return json.loads(out.read_text())


# --- data: profiles, pin table, anchors bytes -------------------------------------------------

@pytest.mark.parametrize("chip", CHIPS)
def test_profile_fields_are_esptools(chip):
    names = {f.name for f in boards.all_fields(chip)}
    assert profiles.fields_of(chip) <= names


def test_agent_pin_table_is_the_profiles():
    # guard/pin.py holds the addresses itself (a file could be rewritten); they must be the
    # ones boards.py generates from esptool
    src = (ROOT / "agent/guard/pin.py").read_text()
    node = next(n for n in ast.walk(ast.parse(src))
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_PIN")
    table = ast.literal_eval(node.value)
    for chip in CHIPS:
        spec = boards.load_profile(chip)["anchors_pin"]
        base, *words = table[chip.upper()]
        assert words == spec["words"]
        assert [base + 4 * w for w in words] == spec["addrs"]
    assert boards.load_profile("sim")["anchors_pin"] == boards.load_profile("esp32")["anchors_pin"]


def test_pin_spec_refuses_used_words(monkeypatch):
    monkeypatch.setitem(boards._PIN, "esp32", ("BLOCK3", (2, 4)))  # 4 is SECURE_VERSION
    with pytest.raises(boards.BoardProfileError, match="SECURE_VERSION"):
        boards.pin_spec("esp32")
    monkeypatch.setitem(boards._PIN, "esp32s3", ("BLOCK_USR_DATA", (5, 6)))  # 6: CUSTOM_MAC
    with pytest.raises(boards.BoardProfileError, match="CUSTOM_MAC"):
        boards.pin_spec("esp32s3")


def test_anchors_bytes_are_what_agent_install_writes(tmp_path):
    proj = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    anchors = project.anchor_set(list(proj.anchors().values()))
    files = agent_install.plan("py", "sim", anchors)
    assert fuse.anchors_bytes(anchors) == files[agent_install.ANCHORS]


# --- status ------------------------------------------------------------------------------------

@pytest.mark.parametrize("chip", CHIPS)
def test_status_of_a_blank_chip_agrees_with_espefuse(chip, blank_chip, tmp_path):
    # a blank chip made by mpguard (espefuse itself, as `line run --sims` makes one); the
    # other tests copy the session's blank (blank_chip, tests/conftest.py): it is this file
    path = fuse.new_virtual_chip(tmp_path / "new" / f"{chip}.efuse", chip)
    assert path.read_bytes() == blank_chip(chip).read_bytes()
    with pytest.raises(FuseError) as e:  # never over a file that exists
        fuse.new_virtual_chip(path, chip)
    assert e.value.reason == "bad_target"
    st = fuse.status(fuse.target_for(efuse_file=path, chip=chip))
    told = summary(path, chip)
    for fact, fields in st.raw.items():
        for name, value in fields.items():
            assert value == int(told[name]["raw_value"], 16), (fact, name)
    assert st.facts["jtag"] == "enabled" and st.facts["uart_download"] == "enabled"
    assert st.facts["flash_encryption"] == "off" and st.facts["secure_boot"] is False
    assert st.pin["state"] == "unpinned" and not st.pin["locked"]


# --- harden --------------------------------------------------------------------------------------

@pytest.mark.parametrize("chip", ["esp32", "esp32c3"])
def test_production_burns_once_and_reads_back(chip, blank_chip):
    path = blank_chip(chip)
    t = fuse.target_for(efuse_file=path, chip=chip)
    before = path.read_bytes()
    p = fuse.plan(t, "production", anchors=ANCHORS)
    assert path.read_bytes() == before  # the plan (dry run) burns nothing
    assert [s.fact for s in p.pending][:2] == ["anchors_pin", "anchors_pin_lock"]
    with pytest.raises(FuseError) as e:
        fuse.burn(p, confirmed=False)
    assert e.value.reason == "not_confirmed" and path.read_bytes() == before

    res = fuse.burn(p, confirmed=True, anchors=ANCHORS)
    assert res.command == fuse.espefuse.shell_line(p.argv())
    after = res.after
    assert after.facts["jtag"] == "disabled-permanently"
    assert after.facts["uart_download"] == ("disabled" if chip == "esp32" else "secure")
    assert after.facts["anchors_pin"] == "match" and after.pin["locked"]
    # espefuse's own summary agrees with mpguard's reading
    told = summary(path, chip)
    spec = boards.load_profile(chip)["anchors_pin"]
    block = bytes.fromhex(told[spec["block"]]["value"].replace(" ", ""))
    pin = b"".join(block[4 * w: 4 * w + 4] for w in spec["words"])
    assert pin == hashlib.sha256(ANCHORS).digest()[: spec["bytes"]]
    assert told[spec["block"]]["writeable"] is False
    for b in profiles.burns(chip, p.options):
        assert int(told[b.field]["raw_value"], 16) == b.value
    # a second run finds every step done: nothing is burned again
    again = fuse.plan(t, "production", anchors=ANCHORS)
    assert again.argv() is None and all(s.done for s in again.steps)
    assert fuse.burn(again, confirmed=True).burned == []
    # another project's anchors cannot be pinned on this chip
    snap = path.read_bytes()
    with pytest.raises(FuseError) as e:
        fuse.plan(t, "development", anchors=OTHER)
    assert e.value.reason == "pin_conflict" and e.value.exit_code == reasons.EXIT_REFUSED
    assert path.read_bytes() == snap


def test_development_pins_without_locking(blank_chip):
    path = blank_chip("esp32s3")
    t = fuse.target_for(efuse_file=path, chip="esp32s3")
    p = fuse.plan(t, "development", anchors=ANCHORS)
    assert [s.fact for s in p.steps] == ["anchors_pin"]
    after = fuse.burn(p, confirmed=True, anchors=ANCHORS).after
    assert after.pin["state"] == "match" and not after.pin["locked"]
    assert after.facts["jtag"] == "enabled"
    assert fuse.status(t).pin["state"] == "pinned"  # no anchors to compare with


def test_keys_are_burned_into_free_key_blocks(blank_chip, tmp_path):
    path = blank_chip("esp32s3")
    key = tmp_path / "fe.key"
    key.write_bytes(bytes(range(32)))
    pem = tmp_path / "sb.pem"
    pem.write_bytes(rsa.generate_private_key(65537, 3072).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    t = fuse.target_for(efuse_file=path, chip="esp32s3")
    p = fuse.plan(t, "production", anchors=ANCHORS, flash_encryption=str(key),
                  secure_boot=str(pem), uart_download="keep")
    cmd = p.argv()
    assert cmd[cmd.index("burn-key"):][:4] == ["burn-key", "BLOCK_KEY0", str(key), "XTS_AES_128_KEY"]
    assert cmd[cmd.index("burn-key-digest") + 1:][:3] == ["BLOCK_KEY1", str(pem), "SECURE_BOOT_DIGEST0"]
    fuse.burn(p, confirmed=True, anchors=ANCHORS)
    told = summary(path, "esp32s3")
    purposes = [told[f"KEY_PURPOSE_{i}"]["value"] for i in range(6)]
    assert purposes[:2] == ["XTS_AES_128_KEY", "SECURE_BOOT_DIGEST0"]
    assert told["BLOCK_KEY0"]["readable"] is False  # burn-key read-protects a flash key
    again = fuse.plan(t, "production", anchors=ANCHORS, flash_encryption=str(key),
                      secure_boot=str(pem), uart_download="keep")
    assert again.argv() is None


BAD = [
    ("unknown profile", {"profile": "paranoid"}, "bad_fuse_profile"),
    ("ESP32 has no secure download", {"uart_download": "secure"}, "fuse_unsupported"),
    ("bad uart choice", {"uart_download": "off"}, "bad_fuse_profile"),
    ("missing key file", {"flash_encryption": "/nonexistent.key"}, "bad_fuse_profile"),
    ("short key file", {"flash_encryption": "SHORT"}, "bad_fuse_profile"),
    ("lock without pin", {"pin": False, "pin_lock": True}, "bad_fuse_profile"),
    ("nothing to pin", {"anchors": None}, "no_pin_anchors"),
]


@pytest.mark.parametrize("name,kw,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_choices_refused_before_burning(name, kw, reason, blank_chip, tmp_path, monkeypatch):
    path = blank_chip("esp32")
    if reason != "no_pin_anchors":  # a choice refused before espefuse reads (on a real board:
        # resets) the chip: the plan must not get as far as the summary
        def no_read(target):
            raise RuntimeError("espefuse was run for a choice refused by its words alone")
        monkeypatch.setattr(fuse.espefuse, "summary", no_read)
    before = path.read_bytes()
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    kw = {k: (str(short) if v == "SHORT" else v) for k, v in kw.items()}
    profile = kw.pop("profile", "production")
    kw.setdefault("anchors", ANCHORS)
    with pytest.raises(FuseError) as e:
        fuse.plan(fuse.target_for(efuse_file=path), profile, **kw)
    assert e.value.reason == reason
    assert path.read_bytes() == before


def test_bad_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("MPGUARD_SIM_DIR", str(tmp_path / "sims"))
    cases = [({}, "bad_target"), ({"port": "x", "efuse_file": "y"}, "bad_target"),
             ({"efuse_file": tmp_path / "missing.bin"}, "bad_target"),
             ({"port": "sim:nosuch"}, "bad_target")]
    odd = tmp_path / "odd.bin"
    odd.write_bytes(bytes(512))
    cases.append(({"efuse_file": odd}, "bad_target"))  # 512 bytes: S2, S3 or C3? say which
    for kw, reason in cases:
        with pytest.raises(FuseError) as e:
            fuse.target_for(**kw)
        assert e.value.reason == reason, kw


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_status_dry_run_and_missing_flag(blank_chip, tmp_path, capsys, monkeypatch):
    path = blank_chip("esp32")
    proj = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    monkeypatch.chdir(proj.root)
    assert cli.main(["fuse", "status", "--efuse-file", str(path), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["facts"]["anchors_pin"] == "unpinned" and st["virtual"] is True
    before = path.read_bytes()
    assert cli.main(["fuse", "harden", "--efuse-file", str(path), "--profile", "production"]) == 0
    out = capsys.readouterr().out
    assert "irreversible: JTAG off for ever" in out and "dry run: nothing was burned" in out
    assert "espefuse --chip esp32 --virt" in out
    rc = cli.main(["fuse", "harden", "--efuse-file", str(path), "--profile", "production", "--burn"])
    err = capsys.readouterr().err
    assert rc == reasons.EXIT_USAGE and "burn JTAG_DISABLE = 1" in err  # the dry run, then no
    assert "confirmation flag is missing" in err
    assert path.read_bytes() == before
    rc = cli.main(["fuse", "harden", "--efuse-file", str(path), "--profile", "production",
                   "--burn", fuse.CONFIRM_FLAG, "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["burned"]["after"]["facts"]["jtag"] == "disabled-permanently"
    assert res["burned"]["after"]["anchors_pin"]["state"] == "match"


# --- read-only commands never write the eFuse file; a --chip that is not the file's is refused ---

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("chip", "wrong", "looks"), [("esp32", "esp32s3", "ESP32 (288 bytes)"),
                                                      ("esp32s3", "esp32", "ESP32-S3")])
def test_status_and_dry_run_leave_the_file_and_refuse_another_chip(chip, wrong, looks, blank_chip,
                                                                    tmp_path, capsys, monkeypatch):
    path = blank_chip(chip)
    subprocess.run([ESPEFUSE, "--virt", "--path-efuse-file", str(path), "--chip", chip,
                    "--do-not-confirm", "burn-efuse", profiles.burns(chip, profiles.options(
                        "production", chip))[0].field, "1"], check=True, capture_output=True,
                   timeout=120)  # a chip with a bit burned: a misread would show it
    proj = project.init(tmp_path / "p", passphrase=None, targets=["sim"])
    monkeypatch.chdir(proj.root)
    sha = _sha(path)
    right = cli.main(["fuse", "status", "--efuse-file", str(path), "--chip", chip, "--json"])
    assert right == 0 and json.loads(capsys.readouterr().out)["chip"] == chip
    assert _sha(path) == sha
    assert cli.main(["fuse", "harden", "--efuse-file", str(path), "--chip", chip,
                     "--profile", "production"]) == 0
    assert "dry run: nothing was burned" in capsys.readouterr().out
    assert _sha(path) == sha
    for cmd in (["status"], ["harden", "--profile", "production"],
                ["harden", "--profile", "production", "--burn", fuse.CONFIRM_FLAG]):
        rc = cli.main(["fuse", *cmd, "--efuse-file", str(path), "--chip", wrong])
        err = capsys.readouterr().err
        assert rc == reasons.EXIT_USAGE, cmd
        assert "bad_target" in err or "not usable" in err
        assert looks in err and "Traceback" not in err
        assert _sha(path) == sha, cmd  # refused: not read as another chip, not rewritten
    with pytest.raises(FuseError) as e:  # a Target made elsewhere (a station's) is checked too
        fuse.status(fuse.Target(wrong, wrong, efuse_file=path))
    assert e.value.reason == "bad_target" and _sha(path) == sha
    if chip == "esp32":  # still an ESP32 by its size: no --chip needed
        assert cli.main(["fuse", "status", "--efuse-file", str(path)]) == 0
        assert "esp32" in capsys.readouterr().out
