"""Key ids and UEIDs are base64url, so 1 in 64 begins with "-": the command line takes such a
word as a value (an option's or a positional), not as an unknown option. A test of the
rotation errors failed on it at random (`--remove <kid>` was "expected one argument")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mpguard.cli import build_parser

KID = "-Xa9_" + "b" * 38  # a key id's 43 characters
UEID = "-Qw3e" + "r" * 17  # a UEID's 22


def test_an_option_takes_a_key_id_beginning_with_a_dash():
    args = build_parser("anchors").parse_args(["anchors", "rotate", "--remove", KID])
    assert args.remove == KID


@pytest.mark.parametrize("word", [KID, UEID])
def test_a_positional_takes_an_id_beginning_with_a_dash(word):
    assert build_parser("devices").parse_args(["devices", "show", word]).id == word
    args = build_parser("devices").parse_args(["devices", "export", "-o", "out", word, KID])
    assert args.ids == [word, KID] and args.output == "out"


@pytest.mark.parametrize("argv", [
    ["devices", "list", "--no-such-option"],
    ["devices", "list", "-x"],
    ["devices", "list", "--batch"],  # an option without its value
    ["devices", "list", "--bad-option-with-a-long-name"],  # lowercase and "-" only: an option
])
def test_a_mistyped_option_is_still_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser(argv[0]).parse_args(argv)
    assert e.value.code == 2


def test_the_cli_reaches_the_command_with_such_an_id(tmp_path):
    """As a user runs it: the command runs and answers about the key (no project here),
    not with a usage error about the word."""
    mpguard = str(Path(sys.executable).parent / "mpguard")
    r = subprocess.run([mpguard, "anchors", "rotate", "--remove", KID, "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert "expected one argument" not in r.stdout + r.stderr
    assert r.returncode != 2 or "UsageError" not in r.stdout, r.stdout + r.stderr
