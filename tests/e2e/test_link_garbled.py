"""A board that answers mpremote's raw-paste request short (it was still reading bytes of a
transfer the host broke off) is a link error, exit 3, and the link starts clean at its next
use: mpremote's own `struct.error` had come out of `mpguard status` as an internal error
(exit 1), in a clean-clone run of tests/e2e/test_cli_reset_deadline.py."""

from __future__ import annotations

import struct

import pytest

from mpguard.errors import BoardNotAnswering
from mpguard.link import BoardLink


def test_a_garbled_raw_paste_answer_is_a_link_error_then_the_link_reconnects(sim_factory,
                                                                            monkeypatch):
    info = sim_factory("g")
    with BoardLink(info.port, connect_timeout=20) as link:
        assert link.exec("print(1 + 1)").strip() == "2"
        t = link.transport
        real = t.raw_paste_write

        def short(data):  # what mpremote does with a one-byte window size from the board
            monkeypatch.setattr(t, "raw_paste_write", real)
            return struct.unpack("<H", b"\x01")

        monkeypatch.setattr(t, "raw_paste_write", short)
        with pytest.raises(BoardNotAnswering, match="garbled"):
            link.exec("print(3)")
        assert link.exec("print(2 + 2)").strip() == "4"
