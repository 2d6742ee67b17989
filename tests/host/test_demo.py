"""`mpguard demo`'s rotation step without a board: a user who installed mpguard without the
`test` extra (no amqtt) gets one line and the rest of the demo; the broker helper refuses
what a CONNECT cannot carry. The step itself runs in tests/e2e/test_cli_board.py."""

from __future__ import annotations

import sys

import pytest

from mpguard import mqtt
from mpguard.cli import demo
from mpguard.errors import BrokerError


class NoCommands:
    root = None

    def run(self, *args: str, **kw: object) -> str:
        raise AssertionError(f"the skipped step ran mpguard {args}")


def test_without_amqtt_the_rotation_step_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # `import amqtt.broker` fails
    assert mqtt.available() is not None
    s = NoCommands()
    s.root = tmp_path
    assert demo.rotation(s, "/dev/null") is None  # type: ignore[arg-type]
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("== 5. MQTT password rotation skipped") and "amqtt" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no value file, nothing started


def test_amqtt_is_there_with_the_test_extra():
    assert mqtt.available() is None
    assert mqtt.UMQTT_SIMPLE.is_file()
    assert (mqtt.UMQTT_SIMPLE.parents[1] / "LICENSE").is_file()


def test_the_host_check_refuses_a_connect_it_cannot_encode(tmp_path):
    b = mqtt.Broker(tmp_path)  # not started: the check fails before any connection
    with pytest.raises(BrokerError):
        b.connect("board", "x" * 200)
