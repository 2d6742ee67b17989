"""Deploy's words and its input checks, without a board: every refusal reason with numbers
says them, a board's output is escaped, the bundle file must be a bounded regular file, and
facts shared by host and agent (the anchors' path, the root stubs) stay equal."""

from __future__ import annotations

import ast
import hashlib
import json
import os

import pytest

from mpguard import cli
from mpguard.agent import package as agentpkg
from mpguard.agent import status
from mpguard.updates import deploy, explain
from mpguard.updates.deploy import DeployResult

BEFORE = {"seq": 5, "app": "demo", "ver": "5.0.0", "trial": None, "last": None}
BOARD = {"agent": "0.1.0", "board_kind": "esp32", "uid": "240ac4000001", "micropython": "1.29.0"}
BUNDLE = {"app": "demo", "ver": "3.0.0", "seq": 3, "targets": ["esp32s3", "sim"],
          "agent": "0.9.0", "exp": 1700000000, "kid": "KID-OF-SIGNER", "confirm": 0}


def refused(reason, detail=None, **kw) -> DeployResult:
    return DeployResult("refused", reason, detail, port="/dev/ttyUSB0", board=dict(BOARD),
                        before=dict(BEFORE), status=dict(BEFORE), bundle=dict(BUNDLE), **kw)


# reason -> (the numbers the message must say, what the hint must say)
NUMBERS = {
    "replay": ("the board's confirmed sequence is 5 (demo 5.0.0 (sequence 5)); the bundle's is 3",
               "its sequence must be above 5"),
    "rollback": ("the board's confirmed sequence is 5 (demo 5.0.0 (sequence 5)); the bundle's "
                 "is 3, lower", "above 5"),
    "wrong_target": ("the board is a esp32 board; the bundle is for esp32s3, sim",
                     "--target esp32"),
    "agent_too_old": ("the board's agent is 0.1.0; the bundle needs 0.9.0 or later",
                      "mpguard agent install --port /dev/ttyUSB0"),
    "expired": ("the bundle expired on 2023-11-14 22:13 UTC", "--expires-days"),
    "unknown_key": ("the bundle is signed by KID-OF-SIGNER; the board trusts KID-A, KID-B",
                    "release key of the project whose anchors the board holds"),
}


@pytest.mark.parametrize("reason", list(NUMBERS))
def test_every_refusal_with_numbers_says_them_and_what_to_do(reason):
    head, lines, hint = explain.explain(refused(reason, anchors=["KID-A", "KID-B"]))
    assert head.startswith("refused by the board /dev/ttyUSB0 (uid 240ac4000001, esp32): ")
    numbers, todo = NUMBERS[reason]
    assert numbers in lines
    assert todo in hint
    assert lines[-1] == "nothing was changed on the board"


def test_a_refusal_without_numbers_keeps_the_reasons_table():
    head, lines, hint = explain.explain(refused("no_space"))
    assert head.endswith("not enough free flash on the board")
    assert hint == "remove files or ship a smaller app"


def test_board_output_and_bundle_claims_are_escaped():
    evil = "x\x1b[2K\rCONFIRMED"
    res = DeployResult("rolled_back", port="p", status={"seq": 1, "app": None},
                       console=f"guard: trial demo 2 seq 2 boot 3\r\n{evil}\r\nTraceback\r\n")
    res.status["last"] = {"result": "rolled_back", "app": evil, "ver": "2", "seq": 2, "boots": 3}
    head, lines, _ = explain.explain(res)
    text = "\n".join([head] + lines)
    assert "\x1b" not in text and "\r" not in text
    assert "  | x\\x1b[2KCONFIRMED" in lines  # "\\r" ends lines on a console: dropped


def test_the_last_trial_boot_is_what_is_shown():
    console = ("guard: trial demo 2 seq 2 boot 1\r\nfirst boot\r\nets Jul 29\r\n"
               "guard: trial demo 2 seq 2 boot 2\r\nsecond boot\r\nTraceback (most recent call last):\r\n"
               '  File "/app/b/main.py", line 1\r\nValueError: no\r\nets Jul 29\r\n'
               "guard: rolled back demo 2 seq 2\r\n")
    assert explain.board_output(console) == [
        "second boot", "Traceback (most recent call last):", '  File "/app/b/main.py", line 1',
        "ValueError: no"]
    assert explain.board_output("nothing of the agent's") == []


def test_outcomes_come_from_the_state_only():
    confirmed = {"seq": 2, "trial": None, "last": {"result": "confirmed", "seq": 2}}
    assert deploy.judge(confirmed, 2) == "confirmed"
    assert deploy.judge(confirmed, 3) == "unknown"  # another sequence's result
    assert deploy.judge({"seq": 1, "trial": {"seq": 2, "boots": 1},
                         "last": {"result": "installed", "seq": 2}}, 2) == "trial"
    assert deploy.judge({"seq": 1, "trial": None,
                         "last": {"result": "rolled_back", "seq": 2}}, 2) == "rolled_back"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: "/dev/zero", "is not a regular file"),
    (lambda tmp: str(tmp), "is not a regular file"),
    (lambda tmp: _sparse(tmp / "huge.bundle", deploy.MAX_BUNDLE + 1), "larger than any bundle"),
    (lambda tmp: str(tmp / "missing.bundle"), "cannot read"),
])
def test_the_bundle_must_be_a_bounded_regular_file(tmp_path, capsys, make, message):
    name = make(tmp_path)
    assert cli.main(["deploy", "--port", "/dev/no-such-port", name, "--json"]) == 2
    obj = json.loads(capsys.readouterr().out)
    assert obj["error"]["type"] == "CommandError" and message in obj["error"]["message"]


def _sparse(path, size) -> str:
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def test_root_files_are_told_apart():
    main = hashlib.sha256(status.stub("main.py")).hexdigest()
    assert status.root_state("main.py", main) == "agent"
    assert status.root_state("main.py", next(iter(status.EARLIER_STUBS))) == "earlier_agent"
    assert status.root_state("main.py", "00" * 32) == "other"
    assert status.root_state("main.py", None) == "absent"
    assert status.main_py_warning("agent") is None
    assert "agent install --force" in status.main_py_warning("other")


def _constant(module: str, name: str):
    tree = ast.parse((agentpkg.agent_dir() / "guard" / module).read_text())
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets):
            return ast.literal_eval(n.value)
    raise AssertionError(f"{name} not in {module}")


def test_the_anchors_path_is_the_same_for_every_reader():
    from mpguard.agent import install

    assert _constant("info.py", "ANCHORS") == _constant("install.py", "ANCHORS") == install.ANCHORS


def test_default_deadline_grows_with_the_bundle():
    assert deploy.default_deadline(0) == 60
    assert deploy.default_deadline(1_000_000) > deploy.default_deadline(1000)
    assert os.path.exists("/dev/zero")
