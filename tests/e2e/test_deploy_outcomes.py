"""What deploy reports, decided by the agent's state and said with its numbers, on a board
(virtual by default), through the HIL plugin's own fixtures and mpguard.api: a reset during
the transfer, a trial nobody confirms, a rollback (with the board's traceback), an app that
fakes the agent's line, refusals with the numbers behind them, a hand-copied /main.py."""

from __future__ import annotations

import os

import pytest

from mpguard import api
from mpguard.errors import BoardReset, CommandError

pytestmark = pytest.mark.timeout(300)

GOOD = 'import guard\nprint("app {v} running")\nguard.confirm()\n'
CHATTY = 'import guard, time\nguard.confirm()\nwhile True:\n    print("tick {v}")\n    time.sleep_ms(20)\n'
BROKEN = 'print("app {v} starting")\nraise RuntimeError("{v} is broken")\n'
QUIET = 'print("app {v} runs, never confirms")\n'
# prints the agent's own line, then crashes: the console says confirmed, the state does not
LIAR = 'print("guard: confirmed demo {v} seq 2")\nraise RuntimeError("{v} crashed")\n'


def app(src: str, v: str, **files: bytes) -> dict:
    return {"main.py": src.format(v=v), **files}


@pytest.mark.sim_only
def test_a_reset_during_the_transfer_ends_at_once_and_keeps_the_old_app(sim, agent_board,
                                                                        mpguard_release):
    board = agent_board
    assert api.deploy(board, mpguard_release(app(CHATTY, "1.0.0"), "1.0.0", app="demo")).outcome \
        == "confirmed"
    big = mpguard_release(app(GOOD, "2.0.0", **{"data.bin": os.urandom(30000)}), "2.0.0",
                          app="demo")
    # the cut comes early in the install; the board boots v1, which prints without end
    sim.arm_power_cut(after=2, torn=True)
    with pytest.raises(BoardReset) as ei:
        api.deploy(board, big, wait=20)
    assert str(ei.value) == ("the board reset during the transfer; it kept its old app, "
                             "demo 1.0.0 (sequence 1); run again")
    assert sim.stats()["power_cuts"] == 1
    assert b"rst:0x1 (POWERON_RESET)" in ei.value.output
    st = api.status(board)
    assert (st.update["ver"], st.update["trial"]) == ("1.0.0", None)
    assert api.deploy(board, big, wait=20).outcome == "confirmed"  # run again: it installs


def test_an_app_that_prints_the_agents_line_and_crashes_is_not_confirmed(agent_board,
                                                                         mpguard_release):
    board = agent_board
    assert api.deploy(board, mpguard_release(app(GOOD, "1.0.0"), "1.0.0", app="demo")).outcome \
        == "confirmed"
    res = api.deploy(board, mpguard_release(app(LIAR, "2.0.0"), "2.0.0", app="demo"), wait=60)
    assert "guard: confirmed demo 2.0.0" in res.console  # the lie was on the console
    assert res.outcome == "rolled_back", res  # the state decides
    assert (res.status["ver"], res.status["seq"]) == ("1.0.0", 1)


def test_a_first_app_that_never_confirms_says_so_and_what_follows(agent_board, mpguard_release):
    res = api.deploy(agent_board, mpguard_release(app(QUIET, "1.0.0"), "1.0.0", app="demo"),
                     wait=3)
    assert res.outcome == "trial"
    text = api.explain(res)
    assert text.startswith(f"still on trial: demo 1.0.0 (sequence 1) is installed on "
                           f"{agent_board.port} (uid ")
    assert "the board has no confirmed app yet: this is its first" in text
    assert "the app must call guard.confirm() once it is healthy" in text
    assert "--confirm-after SECONDS" in text
    assert "with no earlier app, runs no app at all" in text
    assert "None" not in text


def test_a_failed_first_install_says_the_board_runs_no_app_and_shows_its_traceback(
        agent_board, mpguard_release):
    res = api.deploy(agent_board, mpguard_release(app(BROKEN, "1.0.0"), "1.0.0", app="demo"),
                     wait=60)
    assert res.outcome == "rolled_back", res
    assert res.status["app"] is None and res.status["last"]["result"] == "rolled_back"
    text = api.explain(res)
    assert "rolled back: demo 1.0.0 (sequence 1) failed its trial 3 times" in text
    assert "the board now runs no app: it had none confirmed before this one" in text
    assert "what the board printed on the app's last trial boot:" in text
    assert "  | app 1.0.0 starting" in text
    assert "RuntimeError: 1.0.0 is broken" in text
    # the app's own file name in the traceback (guard.boot compiles it with its path)
    assert 'File "/app/a/main.py", line 2' in text
    assert 'File "<string>"' not in text


def test_refusals_say_the_numbers_behind_them(agent_board, mpguard_project, mpguard_release,
                                              tmp_path):
    board = agent_board
    v1 = mpguard_release(app(GOOD, "1.0.0"), "1.0.0", app="demo")
    assert api.deploy(board, v1).outcome == "confirmed"
    printed = board.printed

    # replay: the same bundle again
    res = api.deploy(board, v1)
    assert (res.outcome, res.reason) == ("refused", "replay")
    text = api.explain(res)
    assert "the board's confirmed sequence is 1 (demo 1.0.0 (sequence 1)); the bundle's is 1" in text
    assert "its sequence must be above 1" in text
    # the board refused inside the bundle's last frame: no NAK, no abort frame awaited
    assert b"\x15" not in board.console_since(printed)

    # wrong target: a release for another board kind
    res = api.deploy(board, mpguard_release(app(GOOD, "2.0.0"), "2.0.0", app="demo",
                                            targets=["esp32s3"]))
    assert (res.outcome, res.reason) == ("refused", "wrong_target")
    kind = res.board["board_kind"]
    assert f"the board is a {kind} board; the bundle is for esp32s3" in api.explain(res)
    assert f"--target {kind}" in api.explain(res)

    # signed by another project's key
    other = api.new_project(tmp_path / "other", targets=list(mpguard_project.targets))
    res = api.deploy(board, api.release(other, _folder(tmp_path, GOOD, "9.0.0"), "9.0.0",
                                        app="demo"))
    assert (res.outcome, res.reason) == ("refused", "unknown_key")
    ours = next(iter(mpguard_project.anchors()))
    theirs = next(iter(other.anchors()))
    assert f"the bundle is signed by {theirs}; the board trusts {ours}" in api.explain(res)
    assert api.status(board).update["ver"] == "1.0.0"


def _folder(root, src: str, v: str):
    d = root / f"app-{v}"
    d.mkdir()
    (d / "main.py").write_text(src.format(v=v))
    return d


def test_a_hand_copied_main_py_is_seen_kept_and_given_back(agent_board, mpguard_project,
                                                           mpguard_release):
    board = agent_board
    mine = b"print('my own main.py')\n"
    assert api.deploy(board, mpguard_release(app(GOOD, "1.0.0"), "1.0.0", app="demo")).outcome \
        == "confirmed"
    board.put(mine, "/main.py")  # what `mpremote cp main.py :` does
    st = api.status(board)
    assert st.main_py == "other"
    assert any("not the agent's stub" in w for w in st.warnings)
    # deploy says the board will not run the app, and the trial never starts
    res = api.deploy(board, mpguard_release(app(GOOD, "2.0.0"), "2.0.0", app="demo"), wait=3)
    assert res.main_py == "other" and res.outcome == "trial"
    assert any("runs that file, not the installed app" in w for w in res.warnings)
    # agent install refuses without --force, keeps the user's file with it
    with pytest.raises(CommandError, match="its own /main.py"):
        api.install_agent(board, mpguard_project)
    rep = api.install_agent(board, mpguard_project, force=True)
    assert rep.backed_up == {"/main.py": "/mpguard/backup/main.py"}
    assert board.get("/mpguard/backup/main.py") == mine
    assert api.status(board).main_py == "agent"
    # uninstall puts the board back as it was: the user's main.py, no agent, no apps
    un = api.uninstall_agent(board)
    assert un.restored == ["/main.py"] and "/boot.py" in un.removed
    assert board.get("/main.py") == mine
    assert not any(board.exists(p) for p in ("/lib/guard", "/app", "/mpguard", "/boot.py"))
    assert api.status(board).agent is None


def test_deploy_without_agent_is_a_clear_error_and_changes_nothing(clean_board, mpguard_release):
    with pytest.raises(CommandError, match="agent install"):
        api.deploy(clean_board, mpguard_release(app(GOOD, "1.0.0"), "1.0.0"))
    assert clean_board.listdir("/") == []
