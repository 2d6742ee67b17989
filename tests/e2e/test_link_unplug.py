"""A board pulled out while the link opens its port (the race a production line met: the port
opened, then pyserial's reconfiguration failed with an I/O error): the link raises its own
typed error (a LinkError, which the line reports as `disconnected`), not pyserial's."""

from __future__ import annotations

import pytest

import mpguard.link as linkmod
import mpguard.sim as simlib
from mpguard.errors import LinkError

pytestmark = pytest.mark.timeout(120)


def test_board_pulled_out_while_the_port_is_configured(sim_factory, monkeypatch):
    info = sim_factory("u")
    real = linkmod.Watch

    class PulledOut(real):  # the timing is injected; the failure is the real port's
        def __setattr__(self, name, value):
            if name == "timeout":
                simlib.stop("u")
            super().__setattr__(name, value)

    monkeypatch.setattr(linkmod, "Watch", PulledOut)
    with pytest.raises(LinkError) as e:
        linkmod.BoardLink(info.port, connect_timeout=5)
    assert "went away" in str(e.value), e.value
