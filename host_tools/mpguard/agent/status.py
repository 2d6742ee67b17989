"""What the agent on a board says about it: `mpguard status`, and deploy's first look.

Gathered with the agent's own calls (`info.facts`, `update.status`, `info.anchors`,
`fs.hashes`), never code of the host's; a board without the agent is described with
mpremote's file operations only (`agent` is then None).

`/main.py` is the agent's only way to run the installed app at boot. When it is not the
agent's stub (someone copied their own `main.py` to the board), the board runs that file,
not the app: `main_py` says so ("agent", "earlier_agent", "other", "absent"), and deploy and
status warn.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DeviceError, DeviceRefused
from ..link import BoardLink
from . import package as agentpkg

# SHA-256 of the /main.py stubs of earlier agents: the agent's own too (an upgrade, not a
# user's file).
EARLIER_STUBS = {
    "edaded7bcecbd41e2a4b2da1a1e9442ccd08ebfb10d9f421a6875bb4ca3b3914",  # 0.1.0, guard.update
}
ROOT = ("/boot.py", "/main.py")


def stub(name: str) -> bytes:
    """The agent's stub for the board's root (`boot.py` or `main.py`)."""
    return (agentpkg.agent_dir() / name).read_bytes()


def root_state(name: str, sha: str | None) -> str:
    """"agent", "earlier_agent", "other" or "absent" for a root file's SHA-256 (None: absent)."""
    if sha is None:
        return "absent"
    if sha == hashlib.sha256(stub(name)).hexdigest():
        return "agent"
    if name == "main.py" and sha in EARLIER_STUBS:
        return "earlier_agent"
    return "other"


def main_py_warning(state: str) -> str | None:
    """What to tell the user about the board's /main.py, or None when it is the agent's."""
    if state == "other":
        return ("the board's /main.py is not the agent's stub (a file copied there by hand?): "
                "at boot the board runs that file, not the installed app, and the app never "
                "confirms. Run `mpguard agent install --force` to put the stub back (your "
                "file is kept as /mpguard/backup/main.py; `mpguard agent uninstall` restores it)")
    if state == "absent":
        return ("the board has no /main.py: nothing runs the installed app at boot. Run "
                "`mpguard agent install` to put the agent's stub back")
    return None


@dataclass
class BoardStatus:
    port: str
    agent: str | None = None  # the agent's version; None: no agent answers
    micropython: str | None = None
    board_kind: str | None = None
    uid: str | None = None
    update: dict[str, Any] = field(default_factory=dict)  # the agent's update.status
    anchors: dict[str, Any] = field(default_factory=dict)  # {"file": ok|absent|bad, "kids"}
    main_py: str = "absent"
    boot_py: str = "absent"
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compiled(link: BoardLink) -> bool:
    """The board's agent is .mpy (False: installed as .py, each module compiled on the board
    when it loads, which needs far more heap; or no agent)."""
    return link.exists("/lib/guard/jws.mpy")


def facts(link: BoardLink) -> dict[str, Any] | None:
    """The agent's `info.facts`, or None when the board has no agent that answers it."""
    try:
        return dict(link.call("info.facts"))
    except DeviceRefused as e:
        if e.reason != "bad_call":  # an older agent without this call
            raise
    except DeviceError as e:
        if e.exc_type not in ("ImportError", "AttributeError"):  # no agent, or no guard.rpc
            raise
    return None


def read(link: BoardLink) -> BoardStatus:
    """Everything `mpguard status` shows, read from the board."""
    st = BoardStatus(link.port)
    info = facts(link)
    if info is None:
        hashes = {p: link.sha256(p) for p in ROOT}
    else:
        st.agent, st.micropython = info.get("agent"), info.get("micropython")
        st.board_kind, st.uid = info.get("board_kind"), info.get("uid")
        st.update = dict(link.call("update.status"))
        st.anchors = anchors(link)
        hashes = dict(link.call("fs.hashes", [list(ROOT)]))
    st.boot_py = root_state("boot.py", hashes.get("/boot.py"))
    st.main_py = root_state("main.py", hashes.get("/main.py"))
    if info is None:
        st.warnings.append("no mpguard agent answers on this board: run `mpguard agent install`")
    w = main_py_warning(st.main_py)
    if w and info is not None:
        st.warnings.append(w)
    if info is not None and st.anchors.get("file") != "ok":
        st.warnings.append("the board has no readable trust anchors: it refuses every bundle; "
                           "run `mpguard agent install`")
    return st


def anchors(link: BoardLink) -> dict[str, Any]:
    """The agent's `info.anchors`: {"file": "ok"|"absent"|"bad"|"unknown", "kids": [...]}."""
    try:
        return dict(link.call("info.anchors"))
    except DeviceRefused as e:  # an agent older than this call
        if e.reason != "bad_call":
            raise
        return {"file": "unknown", "kids": []}
