"""A virtual board with the ESP32's 260-byte console RX buffer (`sim start --rx-buffer 260`):
a byte that comes while 260 wait unread is lost, as on a board. The bulk transfer keeps
within it (two 128-byte frames beyond the board's acks); a sender that ran further ahead
loses bytes, and the board refuses the transfer with its files unchanged."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import serial
from test_deploy import GOOD, Releases, install_agent, snapshot

import mpguard.sim as simlib
from mpguard import xfer as transfer
from mpguard.errors import BoardNotAnswering
from mpguard.link import BoardLink
from mpguard.sim import folder
from mpguard.updates import deploy

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rel(tmp_path) -> Releases:
    return Releases(tmp_path)


def _acked_frame_by_frame(monkeypatch) -> None:
    """deploy's transfers acked frame by frame, as to an agent without read-ahead: its bound
    (2 frames beyond the acks) holds whatever the timing; read-ahead's rests on the board
    reading a block as fast as it comes, which a board's C loop does and a process on a
    shared host, fed in bursts, need not (docs/decisions/0018)."""
    send = deploy.send
    monkeypatch.setattr(deploy, "send", lambda link, data, progress=None, timeout=30.0, **kw:
                        send(link, data, progress, timeout, compress=kw.get("compress", False)))


def test_deploy_acked_frame_by_frame_loses_nothing(sim_factory, rel, monkeypatch):
    # at most 256 bytes ever wait, at any speed and whatever the board does meanwhile
    info = sim_factory(rx_buffer=folder.ESP32_RX_BUFFER, baud=921600, latency=2)
    assert simlib.get("t").rx_buffer == 260
    _acked_frame_by_frame(monkeypatch)
    with BoardLink(info.port) as board:
        install_agent(board, rel)
        r = deploy.deploy(board, rel.build("1.0.0", GOOD, extra={"blob.bin": bytes(range(256)) * 64}),
                          wait=20)
        assert r.outcome == "confirmed", r
        assert r.transfer["ahead"] is False
    assert simlib.stats("t")["rx_dropped"] == 0


def _board_pid(name: str) -> int:
    """The process of the sim's running board: the one leaf below its supervisor (which runs
    the fork server, whose child is the board)."""
    sup = json.loads((folder.sim_dir(name) / "state.json").read_text())["pid"]
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    stack, leaves = [sup], []
    while stack:
        pid = stack.pop()
        kids = children.get(pid, [])
        stack += kids
        if not kids and pid != sup:
            leaves.append(pid)
    (board,) = leaves
    return board


def test_a_sender_past_the_window_loses_bytes_and_installs_nothing(sim_factory, rel, monkeypatch):
    info = sim_factory(rx_buffer=folder.ESP32_RX_BUFFER)
    _acked_frame_by_frame(monkeypatch)
    with BoardLink(info.port) as board:
        install_agent(board, rel)
        assert deploy.deploy(board, rel.build("1.0.0", GOOD), wait=20).outcome == "confirmed"
        data = rel.build("2.0.0", GOOD, extra={"blob.bin": bytes(range(256)) * 64})
        before = snapshot(board)
        dropped = simlib.stats("t")["rx_dropped"]
        monkeypatch.setattr(transfer, "WINDOW", 64)  # 8 KiB in flight: 32 x the board's buffer
        # The board is stopped (SIGSTOP) while the window goes out and let go a second later:
        # a board process on a shared host that happened to read as fast as bytes came took
        # all of 8 KiB once (a CI run); a board busy elsewhere, as a chip writing flash, does
        # not. What is lost is then lost whatever the host's load.
        stream = transfer.stream

        held_boards = []

        def held(ser, payload, **kw):
            pid = _board_pid("t")
            held_boards.append(pid)
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(1.0, os.kill, (pid, signal.SIGCONT)).start()
            return stream(ser, payload, **kw)

        monkeypatch.setattr(transfer, "stream", held)
        with pytest.raises(BoardNotAnswering):
            board.stream("update.install", [], data, timeout=3)
        monkeypatch.setattr(transfer, "stream", stream)
        assert len(held_boards) == 1
        monkeypatch.setattr(transfer, "WINDOW", 2)
        assert simlib.stats("t")["rx_dropped"] > dropped
    # The board refused the damaged transfer and, as after any refusal, drops frames until
    # the host's abort frame (ESC 0x00, guard.xfer), which this host never sent: it stopped.
    # Frames are read whole (a blocking readinto waits for all it asked for; the 5 s timeout
    # runs between frames), and some of the bytes of the one it waits on were lost. Send
    # what the host's abort would: whatever the board has of its frame, the next 256 bytes
    # hold an abort marker. Bytes it does not need fall into its REPL's input, which the
    # link's Ctrl-C clears. The board's exec of the install then ends (its answer, then the
    # raw REPL's "\x04\x04>"): at once when it reads the abort frame, or after its 5 s timeout
    # between frames. That end is waited for, at most the 6 s this test slept before.
    with serial.Serial(info.port, timeout=0.1) as s:
        s.write(b"\x10\x00" * 128)
        end, out = time.monotonic() + 6, b""
        while time.monotonic() < end and b"\x04>" not in out:
            out += s.read(256)
    with BoardLink(info.port) as board:
        assert snapshot(board) == before
