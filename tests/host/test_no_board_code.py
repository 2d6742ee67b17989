"""No board code in host strings (issue #8): all code that runs on a board is in agent/.

The host calls the agent by name with JSON arguments (mpguard.link's one call line); it never
sends code of its own. This scan parses every string constant of host_tools/mpguard (plain,
f-strings, and `str.format` / `%` templates with their fields filled by a name) and fails on
any that is Python code: an import, a definition, a loop, an assignment or a function call.
sim/firmware is skipped: it is the virtual board's firmware stand-in (it runs as the board).
Each exception below names its one reason; an exception that no longer matches fails too.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parents[2] / "host_tools" / "mpguard"
SKIP = HOST / "sim" / "firmware"

# (file under host_tools/mpguard, the string's first line) -> why it is not board code
ALLOWED = {
    ("link.py", "import guard.rpc"):
        "the one call line: a name and JSON arguments for guard.rpc, no code of the host's",
    ("link.py", "print(repr(_x))"):
        "eval: the line mpremote's own eval sends (print(repr(expression))); the host reads "
        "the value itself so that a value that is not a literal is a typed error",
    ("link.py", "import machine"):
        "hard reset, which must work on a board without the agent (mpremote's `reset` sends "
        "the same)",
    ("linkfiles.py", "from binascii import a2b_base64 as d"):
        "put: mpremote's fs_writefile's own open, a write per chunk and close (it must work "
        "on a board without the agent: agent install writes the agent with it), each chunk "
        "as a bytes literal or, where shorter, base64 for binascii.a2b_base64 or base64 of "
        "a raw deflate stream; it says whether put's inflater is defined already",
    ("linkfiles.py", "w(_x)"): "put: one chunk's write, a bytes literal (as mpremote's)",
    ("linkfiles.py", "w(d('_x'))"): "put: one chunk's write, base64 text",
    ("linkfiles.py", "w(_mpg_z(d('_x'),_x))"):
        "put: one chunk's write, base64 of its own raw deflate stream and its length, inflated "
        "by put's `_mpg_z`",
    ("linkfiles.py", "from io import BytesIO as B"):
        "put: its inflater `_mpg_z` (a chunk's raw deflate stream, checked for its length), "
        "defined once per REPL session where the board has `deflate`",
    ("linkfiles.py", "f.close()"): "put: the file's close (as mpremote's)",
    ("linkfiles.py", "import vfs"):
        "root_fs: the class name of the filesystem MicroPython's own vfs.mount() lists at '/' "
        "(it must work on a board without the agent: agent install refuses a FAT board before "
        "it writes anything); changes nothing on the board",
    ("unixport.py", "import sys as _s, json as _j"):
        "test harness prelude run on the host's MicroPython unix port, never sent to a board",
    ("cli/demo.py", "import guard"):
        "the demo app's main.py: shipped inside a signed bundle, installed by the agent",
    ("cli/demo.py", 'print("app {v} starting")'):
        "the demo's broken app's main.py: shipped inside a signed bundle",
    ("mqtt.py", "import json"):
        "the MQTT app's main.py (the demo's rotation step, the rotation e2e tests): shipped "
        "inside a signed bundle",
}

_CODE_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
               ast.For, ast.While, ast.Try, ast.With, ast.Lambda)
_HOLE = "_x"  # what a template's fields become
_PERCENT = re.compile(r"%(\([a-z_]+\))?[-#0 +]*\d*(\.\d+)?[sdrxif]")


def _fill(template: str) -> str | None:
    """A `str.format` template with every field replaced by a name (None if not one)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return None
    return "".join(lit + (_HOLE if field is not None else "") for lit, field, _, _ in parts)


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def is_code(text: str) -> bool:
    """True if `text` (or it as a template) parses as Python that does something: an import,
    a definition, a loop, a call of a named function, or several statements with an
    assignment (a lone `name=value` is a setting such as `heapsize=64K`, not code)."""
    for cand in {text, _fill(text), _PERCENT.sub(_HOLE, text)}:
        if not cand or not cand.strip():
            continue
        try:
            tree = ast.parse(cand)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, _CODE_NODES):
                return True
            if isinstance(node, ast.Call) and _root(node.func) not in (None, _HOLE):
                return True
            if isinstance(node, ast.Assign | ast.AugAssign) and len(tree.body) > 1:
                return True
    return False


def _strings(tree: ast.AST):
    """(line, text) of every string constant and f-string that is not a docstring."""
    docs = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if (isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)):
            docs.add(id(body[0].value))
    inner = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.JoinedStr):
            inner |= {id(v) for v in n.values}
            text = "".join(v.value if isinstance(v, ast.Constant) else _HOLE for v in n.values)
            yield n.lineno, text
    for n in ast.walk(tree):
        if (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                and id(n) not in inner):
            yield n.lineno, n.value


def scan(root: Path, skip: Path | None = None) -> list[tuple[str, int, str]]:
    """(file relative to root, line, first line of the string) of each string of code."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if skip is not None and path.is_relative_to(skip):
            continue
        rel = path.relative_to(root).as_posix()
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if is_code(text):
                found.append((rel, line, text.strip().split("\n")[0]))
    return found


def test_host_sends_no_code_of_its_own():
    found = scan(HOST, SKIP)
    unexplained = [f"{f}:{line}: {first!r}" for f, line, first in found
                   if (f, first) not in ALLOWED]
    assert not unexplained, "board code in host strings (move it into agent/guard):\n" + \
        "\n".join(unexplained)
    stale = set(ALLOWED) - {(f, first) for f, _, first in found}
    assert not stale, f"exceptions that match nothing any more: {sorted(stale)}"


# What the scan must catch: the forms board code took in host strings before issue #8.
CAUGHT = {
    "format template": '_CODE = """\\\nimport json\nfrom guard import xfer, update\n'
                       '_r = xfer.Reader({n}, {sha!r})\nprint({mark!r} + json.dumps(_r))\n"""\n',
    "format template with a dotted import": '_RPC = "from {mod} import {fn} as f\\nf()"\n',
    "f-string": 'def f(expr):\n    return f"import json\\nprint(json.dumps({expr}))"\n',
    "percent template": 'X = "import os\\nos.remove(%r)" % path\n',
    "one call": 'X = "machine.reset()"\n',
    "a loop": 'X = "for e in os.ilistdir(d):\\n print(e)"\n',
    "statements": 'X = "a = 1; b = a"\n',
}
# What it must let through: messages and data that merely look like code.
PASSED = {
    "message": 'X = "cannot tell the board kind from {machine!r}: give --board KIND"\n',
    "reset cause": 'X = "0x1 (POWERON_RESET)"\n',
    "dotted name": 'X = "mpguard.sim.supervisor"\n',
    "docstring": 'def f():\n    """Run `import x` and call f(1)."""\n',
    "path": 'X = "/lib/guard/board.json"\n',
    "call name": 'X = "update.status"\n',
    "setting": 'def f(h):\n    return f"heapsize={h}"\n',
    "message with detail": 'def f(m, d):\n    return f"{m} ({d})"\n',
}


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_scan_catches(tmp_path, name):
    (tmp_path / "m.py").write_text(CAUGHT[name])
    assert len(scan(tmp_path)) == 1, name


@pytest.mark.parametrize("name", sorted(PASSED))
def test_scan_lets_through(tmp_path, name):
    (tmp_path / "m.py").write_text(PASSED[name])
    assert scan(tmp_path) == [], name
