"""The station file: a good one reads as written; each bad one is refused by name (table and
key), with exit code 2, before any board or inventory is touched."""

from __future__ import annotations

import pytest

from mpguard import cli, project, reasons
from mpguard.errors import LineError
from mpguard.line import station

GOOD = """
[station]
name = "line-1"
operator = "alice"
batch = "B-2026-11"
project = "proj"
parallel = 4

[steps]
agent = true
provision = true
harden = { profile = "production", uart_download = "keep" }
deploy = "app.bundle"
attest = { accept = ["pass", "warn"] }
"""


@pytest.fixture
def folder(tmp_path):
    project.init(tmp_path / "proj", passphrase=None, targets=["sim"])
    (tmp_path / "app.bundle").write_bytes(b"x")
    return tmp_path


def write(folder, text):
    p = folder / "line.toml"
    p.write_text(text)
    return p


def test_good_station_file(folder):
    st = station.load(write(folder, GOOD))
    assert (st.name, st.operator, st.batch, st.parallel) == ("line-1", "alice", "B-2026-11", 4)
    assert st.order == ["agent", "provision", "harden", "deploy", "attest"]
    assert st.steps["deploy"]["bundle"] == folder / "app.bundle"
    assert st.steps["harden"] == {"profile": "production", "uart_download": "keep"}
    assert st.project == folder / "proj"


BAD = [
    ("not TOML", "[station\n", "not valid TOML"),
    ("no station table", "[steps]\nagent = true\n", "[station]: the table is missing"),
    ("missing batch", GOOD.replace('batch = "B-2026-11"\n', ""), "[station] batch: is required"),
    ("unknown station key", GOOD.replace("parallel = 4", "paralel = 4"), "unknown key(s) paralel"),
    ("unknown step", GOOD.replace("agent = true", "agent = true\nflash = true"),
     "unknown step(s) flash"),
    ("unknown top table", GOOD + "\n[extra]\nx = 1\n", "unknown table(s) extra"),
    ("bad name", GOOD.replace('name = "line-1"', 'name = "line 1/a"'), "[station] name"),
    ("parallel too big", GOOD.replace("parallel = 4", "parallel = 1000"), "[station] parallel"),
    ("missing bundle file", GOOD.replace('"app.bundle"', '"nope.bundle"'), "deploy.bundle"),
    ("deploy without bundle", GOOD.replace('deploy = "app.bundle"', "deploy = true"),
     "give the bundle"),
    ("unknown profile", GOOD.replace('profile = "production"', 'profile = "max"'),
     "harden.profile"),
    ("unknown harden key", GOOD.replace('uart_download = "keep"', 'uart = "keep"'),
     "unknown key(s) uart"),
    ("attest without provision", GOOD.replace("provision = true", "provision = false"),
     "attest: needs provision"),
    ("bad accept", GOOD.replace('accept = ["pass", "warn"]', 'accept = ["ok"]'), "attest.accept"),
    ("not a project", GOOD.replace('project = "proj"', 'project = "."'), "not an mpguard project"),
    ("unknown board", GOOD.replace("parallel = 4", 'parallel = 4\nboard = "esp8266"'),
     "[station] board"),
    ("empty steps", GOOD.split("[steps]")[0] + "[steps]\n", "[steps]: the table is missing"),
]


@pytest.mark.parametrize("name,text,says", BAD, ids=[b[0] for b in BAD])
def test_bad_station_files(folder, name, text, says):
    with pytest.raises(LineError) as e:
        station.load(write(folder, text))
    assert e.value.reason == "bad_station" and e.value.exit_code == reasons.EXIT_USAGE
    assert says in str(e.value), str(e.value)


def test_cli_refuses_before_touching_anything(folder, capsys, monkeypatch):
    monkeypatch.setenv("MPGUARD_SIM_DIR", str(folder / "sims"))
    p = write(folder, GOOD.replace("parallel = 4", "parallel = 0"))
    assert cli.main(["line", "run", "--station", str(p), "--sims", "2"]) == reasons.EXIT_USAGE
    assert "[station] parallel" in capsys.readouterr().err
    assert not (folder / "sims").exists() and not (folder / "proj" / "inventory.db").exists()
    # harden burns eFuses: the station does not start without the confirmation flag
    p = write(folder, GOOD.replace("deploy = \"app.bundle\"\n", "").replace("attest", "#"))
    assert cli.main(["line", "run", "--station", str(p)]) == reasons.EXIT_USAGE
    assert "irreversible" in capsys.readouterr().err
    assert not (folder / "proj" / "inventory.db").exists()
