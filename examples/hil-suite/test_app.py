"""An example hardware-in-the-loop suite for an app that runs under the mpguard agent.

Runs on a virtual board by default; on a real one with `pytest --board /dev/ttyUSB0`.
Each test gets a board with an empty filesystem plus the agent (`agent_board`), and signs
its releases with a throw-away project (`mpguard_project`), so tests do not depend on each
other. mpguard.api is the stable Python API; the `board` fixture is a mpguard.link.BoardLink.
"""

import json
import subprocess
import sys

import pytest

from mpguard import api
from mpguard.errors import BoardReset


def test_the_app_installs_and_confirms(agent_board, app_release):
    res = api.deploy(agent_board, app_release)
    assert res.outcome == "confirmed", api.explain(res)
    assert "hello from the example app 1.0.0" in res.console
    st = api.status(agent_board)
    assert (st.update["app"], st.update["ver"], st.main_py) == ("example", "1.0.0", "agent")


def test_a_module_of_the_app_on_the_board(agent_board, app_release):
    api.deploy(agent_board, app_release)
    slot = api.status(agent_board).update["active"]
    out = agent_board.exec(f"import sys\nsys.path.insert(0, '/app/{slot}')\n"
                           "import counter\nprint(counter.total(range(10)))")
    assert out.strip() == "45"


def test_a_broken_update_rolls_back_to_the_app_before(agent_board, app_release,
                                                      mpguard_release):
    assert api.deploy(agent_board, app_release).outcome == "confirmed"
    broken = mpguard_release({"main.py": "raise ValueError('oops')\n"}, "2.0.0", app="example")
    res = api.deploy(agent_board, broken, wait=60)
    assert res.outcome == "rolled_back"
    assert "ValueError: oops" in api.explain(res)  # what the board printed
    assert api.status(agent_board).update["ver"] == "1.0.0"


def test_the_mpguard_command_inside_a_test(agent_board, app_release):
    # the fixture holds the port: let go of it while the command runs
    with agent_board.detached() as port:
        out = subprocess.run([sys.executable, "-m", "mpguard", "deploy", "--port", port,
                              str(app_release.path), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["outcome"] == "confirmed"
    assert api.status(agent_board).update["ver"] == "1.0.0"  # connected again


@pytest.mark.sim_only
def test_a_power_cut_during_an_update_keeps_the_app(sim, agent_board, app_release,
                                                    mpguard_release):
    api.deploy(agent_board, app_release)
    big = mpguard_release({"main.py": "import guard\nguard.confirm()\n",
                           "data.bin": bytes(20000)}, "2.0.0", app="example")
    sim.arm_power_cut(after=2)
    with pytest.raises(BoardReset, match="kept its old app, example 1.0.0"):
        api.deploy(agent_board, big)
    assert api.deploy(agent_board, big).outcome == "confirmed"
