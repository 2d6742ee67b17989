"""The side channel between the virtual board's firmware and its supervisor: one table
(firmware/_simev.py), used by both ends and by nothing else."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

import mpguard.sim as simlib
from mpguard.sim import events, folder
from mpguard.unixport import micropython_path

pytestmark = pytest.mark.timeout(120)

FIRMWARE = folder.firmware_dir()
TABLE = events.ev
NAMES = {name: getattr(TABLE, name) for name in dir(TABLE)
         if name.isupper() and isinstance(getattr(TABLE, name), str)}


def test_the_table_is_well_formed():
    assert set(NAMES.values()) == set(TABLE.ARGS), "every event letter has its ARGS entry"
    assert len(set(NAMES.values())) == len(NAMES), "no two events share a letter"
    for letter in TABLE.ARGS:
        assert letter and " " not in letter and "\n" not in letter


def test_micropython_reads_the_same_table():
    out = subprocess.run(
        [micropython_path(), "-c",
         "import json, _simev\n"
         "print(json.dumps({'args': _simev.ARGS, 'cut_len': _simev.CUT_LEN,"
         " 'line': _simev.line(_simev.CUT, 3, 0, 17)}))"],
        capture_output=True, text=True, timeout=30, env={"MICROPYPATH": str(FIRMWARE)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["args"] == {k: list(v) for k, v in TABLE.ARGS.items()}
    assert got["cut_len"] == TABLE.CUT_LEN
    assert events.parse(got["line"].encode()) == (TABLE.CUT, (3, 0, 17))


def test_the_supervisor_handles_exactly_the_table():
    board = events.Board(folder.read_stats(Path("/nonexistent")))
    assert set(board.on) == set(TABLE.ARGS)
    for letter, names in TABLE.ARGS.items():  # each handler takes the table's numbers
        board.apply(TABLE.line(letter, *range(1, len(names) + 1)).encode())


@pytest.mark.parametrize("line", [b"Q", b"W", b"W 1 2", b"X 1 2", b"U 1", b"w 1", b"W x"],
                         ids=["unknown", "too-few", "too-many", "cut-too-few", "up-with-number",
                              "lower-case", "not-a-number"])
def test_a_line_outside_the_table_is_refused(line):
    with pytest.raises(ValueError):
        events.parse(line)


def _firmware_events() -> list[tuple[str, str, int]]:
    """(module, event name, number of arguments) of every event the firmware sends: calls of
    `event(...)` (in _simfw) and `_ev(...)` (in _simflash, which gets _simfw.event)."""
    sent = []
    for path in sorted(FIRMWARE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if fname not in ("event", "_ev"):
                continue
            first = node.args[0] if node.args else None
            assert (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)
                    and first.value.id == "_simev"), (
                f"{path.name}:{node.lineno}: an event must be named from the table (_simev.NAME)")
            sent.append((path.name, first.attr, len(node.args) - 1))
    return sent


def test_the_firmware_sends_exactly_the_table():
    sent = _firmware_events()
    for module, name, nargs in sent:
        assert name in NAMES, f"{module}: _simev.{name} is not in the table"
        assert nargs == len(TABLE.ARGS[NAMES[name]]), f"{module}: {name} sent with {nargs} numbers"
    assert {name for _, name, _ in sent} == set(NAMES), "every event of the table is sent"
    # the event pipe is written in one place only: _simfw.event, with _simev.line
    writers = [p.name for p in FIRMWARE.glob("*.py") if "_ctlf.write(" in p.read_text()]
    assert writers == ["_simfw.py"]
    assert "_ctlf.write(_simev.line(" in (FIRMWARE / "_simfw.py").read_text()


def test_a_session_that_sends_every_event_logs_no_stray_line(sim_factory, mpr, mpremote_bin, sim_dir):
    """Blank flash (F), writes and erases (W, E), user code (B, I), kbd_intr (K0, K1), a power
    cut armed at start (A, X), machine.reset() (R), boots (U): the supervisor understood all."""
    port = sim_factory(power_cut_after=3).port
    proc = subprocess.Popen([mpremote_bin, "connect", port, "exec",
                             "import micropython\nmicropython.kbd_intr(-1)\nmicropython.kbd_intr(3)\n"
                             "with open('/a.bin', 'wb') as f:\n    f.write(bytes(20000))\n"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        simlib.wait_for("t", "power_cuts", 1, timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    mpr(port, "reset")
    st = simlib.wait_for("t", "hard_resets", 1)
    assert (st["formats"], st["power_cuts"], st["hard_resets"]) == (1, 1, 1)
    assert st["writes"] > 0 and st["erases"] > 0
    log = (sim_dir / "t" / folder.LOG_FILE).read_text()
    assert "bad event" not in log, log
