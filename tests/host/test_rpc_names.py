"""The host and the agent agree on the call wire (twin facts that must not drift): the answer
mark, and every name the host calls exists in guard.rpc's table, as a plain or streaming call."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mpguard import link
from mpguard.agent import package as agentpkg

HOST = Path(link.__file__).resolve().parent
RPC = agentpkg.agent_dir() / "guard" / "rpc.py"


def _agent_constants() -> dict:
    tree = ast.parse(RPC.read_text())
    return {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name) and t.id.startswith("_")
            and isinstance(n.value, ast.Constant | ast.Dict)}


def _host_calls(kind: str) -> set[str]:
    pat = re.compile(r"\." + kind + r'\(\s*"([a-z0-9_.]+)"')
    return {m for p in HOST.rglob("*.py") for m in pat.findall(p.read_text())}


def test_answer_mark_is_the_same_on_both_sides():
    assert _agent_constants()["_MARK"] == link._MARK == "\x1eMPG:"


def test_every_name_the_host_calls_is_in_the_agents_table():
    consts = _agent_constants()
    calls, streams = _host_calls("call"), _host_calls("stream")
    assert {"update.status", "info.facts", "fs.hashes"} <= calls
    assert streams == {"update.install"}
    known = set(consts["_CALLS"]) | set(consts["_WRITES"])
    assert calls <= known, calls - known
    assert streams <= set(consts["_STREAMS"])
    for mod, fn in list(consts["_CALLS"].values()) + list(consts["_STREAMS"].values()):
        src = (agentpkg.agent_dir() / "guard" / f"{mod}.py").read_text()
        assert f"\ndef {fn}(" in src, f"guard.{mod}.{fn} does not exist"


def test_the_call_line_carries_only_a_name_and_json():
    line = link.BoardLink._line("run", "fs.hashes", [["/a'b", "é"], None])
    assert line == ("import guard.rpc\nguard.rpc.run('fs.hashes', "
                    "'[[\"/a\\'b\", \"\\\\u00e9\"], null]')")
    assert link.BoardLink._line("stream", "update.install", [], 5, "ab") == (
        "import guard.rpc\nguard.rpc.stream('update.install', '[]', 5, 'ab')")


@pytest.mark.parametrize("name", ["status", "guard.update.status", "a.b;c", "a.b\nimport os",
                                  "A.b", "a.b'", "", "a..b"])
def test_names_that_are_not_call_names_are_refused_on_the_host(name):
    with pytest.raises(ValueError):
        link.BoardLink._line("run", name, [])
