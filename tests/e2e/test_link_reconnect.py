"""The link connecting right after the board reset (`reboot()`, then the next operation): what
it sent while the old boot died is lost, as on a board, and its reset line makes the link
send Ctrl-C and Ctrl-A again at once. A connect bound shorter than one attempt (3 s) shows
it: waiting the attempt out, the link gave up with BoardNotAnswering. And `reboot()` returns
only once the board has reset: the raw REPL answers "OK" before it runs machine.reset(), and
a link that connected at once interrupted that code (no reset: the counter stayed behind)."""

from __future__ import annotations

import pytest

import mpguard.sim as simlib
from mpguard.link import BoardLink

pytestmark = pytest.mark.timeout(120)


def test_the_next_operation_after_a_reboot_reconnects_within_a_short_bound(sim_factory):
    info = sim_factory("r")
    with BoardLink(info.port, connect_timeout=2.5) as link:
        for i in range(5):
            link.reboot()  # machine.reset(), the board left to boot; the next use reconnects
            assert simlib.stats("r")["hard_resets"] == i + 1  # it has reset already
            assert link.exec("print(6 * 7)").strip() == "42", i
    assert simlib.stats("r")["hard_resets"] == 5
