"""The HIL plugin as a user meets it: entry point, options as fixtures, skips, failure reports."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_plugin_is_registered_by_entry_point(pytester):
    pytester.makepyfile("def test_x(board_target, board_kind, board_scope, board_baud):\n"
                        "    assert (board_target, board_kind, board_scope, board_baud) == "
                        "('sim', 'sim', 'function', None)\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert "mpguard board: sim" in res.stdout.str()


def test_options_reach_fixtures_and_fixtures_can_be_overridden(pytester):
    pytester.makeconftest("import pytest\n@pytest.fixture(scope='session')\n"
                          "def board_kind():\n    return 'esp32'\n")
    pytester.makepyfile("def test_x(board_target, board_kind):\n"
                        "    assert board_target == '/dev/ttyFAKE0'\n"
                        "    assert board_kind == 'esp32'\n")
    res = pytester.runpytest("--board", "/dev/ttyFAKE0", "--board-kind", "sim")
    res.assert_outcomes(passed=1)


def test_sim_only_test_is_skipped_on_a_real_board_with_reason(pytester):
    pytester.makepyfile("def test_needs_sim(sim):\n    pass\n")
    res = pytester.runpytest("--board", "/dev/ttyUSB9", "-rs")
    res.assert_outcomes(skipped=1)
    assert "needs the virtual board's controls; running on a real board (/dev/ttyUSB9)" in (
        res.stdout.str())


def test_unreachable_real_board_is_a_clear_setup_error(pytester):
    pytester.makepyfile("def test_x(board):\n    pass\n")
    res = pytester.runpytest("--board", "/dev/ttyUSB9")
    res.assert_outcomes(errors=1)
    assert "NoPortError: no such port: /dev/ttyUSB9" in res.stdout.str()


@pytest.mark.timeout(120)
def test_failure_report_shows_what_the_board_printed(pytester):
    pytester.makepyfile(
        "def test_fails(board):\n"
        "    board.exec(\"print('hello from the board')\")\n"
        "    assert False\n")
    res = pytester.runpytest()
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "what the board printed" in out
    assert "hello from the board" in out


@pytest.mark.timeout(120)
def test_module_scope_shares_one_board(pytester):
    pytester.makepyfile(
        "def test_a(board):\n    board.exec('seen = 1')\n"
        "def test_b(board):\n    assert board.eval(\"'seen' in globals()\") is True\n")
    res = pytester.runpytest("--board-scope", "module")
    res.assert_outcomes(passed=2)
    res2 = pytester.runpytest()
    res2.assert_outcomes(passed=1, failed=1)


@pytest.mark.timeout(180)
def test_a_power_cut_armed_by_a_failing_test_does_not_hit_the_next_test(pytester):
    """With --board-scope module (one virtual board), a test that arms a power cut and fails
    before it fires: the cut is disarmed at its end, the next test's writes are not cut."""
    pytester.makepyfile(
        "def test_a(sim, board):\n"
        "    sim.arm_power_cut(after=1)\n"
        "    assert False, 'fails before any write'\n"
        "def test_b(clean_board):\n"
        "    clean_board.put(b'x = 1\\n', '/x.py')\n"
        "    assert clean_board.eval(\"open('/x.py').read()\") == 'x = 1\\n'\n")
    res = pytester.runpytest("--board-scope", "module", "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1, passed=1)


@pytest.mark.timeout(300)
def test_the_example_of_docs_hil_md_runs_as_written(pytester):
    # the first thing a tester copies: it lacked its imports and wrote into a /lib that a
    # fresh board does not have (a newcomer's walkthrough found it); run as the page shows it
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "hil.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    pytester.makepyfile(test_doc=code)
    app = pytester.path / "app"
    app.mkdir()
    (app / "main.py").write_text("import guard\nguard.confirm()\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=3)


@pytest.mark.timeout(120)
def test_board_is_usable_after_sim_restart(pytester):
    """docs/hil.md: `sim.restart()` is "a power cycle keeping the flash". The restarted sim
    gets a new pty, but the `board` link keeps the old port: every later use fails
    (BoardNotAnswering: write failed: [Errno 5]), or could reach another sim that got the
    old pty number."""
    pytester.makepyfile(
        "def test_restart(sim, board):\n"
        "    board.put(b'x = 1\\n', '/keep.py')\n"
        "    sim.restart()\n"
        "    assert board.eval(\"open('/keep.py').read()\") == 'x = 1\\n'\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


@pytest.mark.timeout(120)
def test_failure_report_shows_output_of_code_that_hit_its_timeout(pytester):
    """docs/hil.md: a failed test's report has "what the board printed". Code that prints and
    then loops past its `exec(timeout=)` is the typical hung test, but its output is dropped
    (LinkDeadline path of BoardLink._op records nothing): the section says "(nothing)"."""
    pytester.makepyfile(
        "def test_hangs(board):\n"
        "    board.exec(\"print('printed ' + 'before the hang')\\nwhile True:\\n pass\", timeout=3)\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "what the board printed" in out
    section = out.split("what the board printed", 1)[1].split("short test summary")[0]
    assert "printed before the hang" in section, section  # not only the test's source


@pytest.mark.timeout(200)
def test_module_scope_board_works_after_a_test_stopped_by_pytest_timeout(pytester):
    """With --board-scope module, a test stopped by pytest-timeout while the board runs its
    code leaves the shared link un-stale, so the next test's first operation fails: BoardNotAnswering "could not enter
    raw repl" after ~10 s."""
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.timeout(3)\n"
        "def test_a(board):\n"
        "    board.exec('while True:\\n pass', timeout=60)\n"
        "def test_b(board):\n"
        "    assert board.eval('1+1') == 2\n")
    res = pytester.runpytest("-p", "no:cacheprovider", "--board-scope", "module")
    res.assert_outcomes(failed=1, passed=1)


@pytest.mark.timeout(200)
def test_get_of_a_large_file_is_given_time_for_its_bytes(pytester):
    """docs/hil.md / link.py: every operation's deadline is "its timeout, plus time for its
    bytes"; `put` gets size/MIN_RATE more, `get` only the link's timeout. At 115200 baud a
    16 KiB file puts fine and then `get` raised LinkDeadline past a 2 s timeout (with the
    fixture's timeout of 30 s: any file over ~110 KiB at 115200 baud, measured 160 KiB ->
    LinkDeadline at 30 s). It is read again with time for its bytes. Here at half the
    size and half the timeout (8 KiB, 1 s): the same ratio of the file's read time to the
    timeout (a whole `get` took 2.1 s of 8 KiB, 4.2 s of 16 KiB, at 115200 baud) in half the
    run time."""
    pytester.makepyfile(
        "import os\n"
        "def test_big(board):\n"
        "    board.timeout = 1.0\n"
        "    data = os.urandom(8 * 1024)\n"
        "    board.put(data, '/big.bin')\n"
        "    assert board.get('/big.bin') == data\n")
    res = pytester.runpytest("-p", "no:cacheprovider", "--board-baud", "115200")
    res.assert_outcomes(passed=1)


@pytest.mark.timeout(120)
def test_eval_of_a_non_literal_is_a_typed_error(pytester):
    """Low: `board.eval("object()")` raises the host's builtins SyntaxError from mpremote's
    ast.literal_eval, not an mpguard error: it is DeviceError, saying so."""
    pytester.makepyfile(
        "import pytest\n"
        "from mpguard.errors import DeviceError\n"
        "def test_eval(board):\n"
        "    with pytest.raises(DeviceError, match='not a Python literal'):\n"
        "        board.eval('object()')\n"
        "    assert board.eval('[1, None]') == [1, None]\n")
    res = pytester.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
