"""`mpguard deploy`: send a signed bundle to a board, let the agent install it, reboot, and
report the board's answer: confirmed, refused (with the numbers behind the reason), still on
trial, or rolled back (with what the board printed).

Steps:
1. after a soft reset the agent describes the board (`info.facts`: agent version, kind,
   unique id), its update state before (`update.status`) and its root files (`fs.hashes`:
   is /main.py the agent's stub?). No agent: CommandError (exit 2). Another soft reset then
   gives the install the whole heap (an agent installed as .py needs it).
2. the bundle streams over the bulk transfer (`BoardLink.stream`) straight into the agent's
   `update.install` (compressed when the agent says it can inflate, `info.facts` "deflate",
   and that makes it smaller: docs/decisions/0017-transfer-window-and-deflate.md), which
   verifies the manifest before it writes anything; a refusal stops
   the transfer early. A board reset during it (a power cut, a watchdog) is seen at once
   (mpguard.watch): the state read again after it says whether the install was committed
   (a trial of this bundle's sequence: go on) or not (BoardReset, exit 3: it kept its old
   app, run again). `deadline` bounds steps 1-2 whatever the board prints.
3. installed: the board is reset and boots the new app on trial. deploy reads what it prints
   without interrupting it, until a `guard: confirmed`/`guard: rolled back` line or `wait`
   seconds; then the agent's state (`update.status`) alone decides the outcome. Those lines
   are only hints of when to look: one the state does not back (the app printed it) resumes
   the watch with another reset while time remains.
4. confirmed or rolled back: the board is reset once more and left running its app (a board
   still on trial is left as it is: a reset would count one of its trial boots).
5. the manifest (the JWS the board verified) is left at /mpguard/m-<sha256[:16]>.jws before
   the trial: the board's attestation re-hashes the installed files against it, trusting it
   only if its SHA-256 is the digest the installer recorded (docs/attest.md). Manifests of
   releases that are neither confirmed nor on trial are removed after the trial.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..agent import status as agentstatus
from ..errors import BoardReset, CommandError, DeviceError, DeviceRefused
from ..link import BoardLink
from . import bundle

MANIFEST_DIR = "/mpguard"
CONFIRMED = b"guard: confirmed"
ROLLED_BACK = b"guard: rolled back"
HINTS = (CONFIRMED, ROLLED_BACK)
MAX_BUNDLE = bundle.HDR_LEN + bundle.MAX_MANIFEST + bundle.MAX_TOTAL
MIN_RATE = 500  # B/s: the default deadline allows for a link this slow


@dataclass
class DeployResult:
    outcome: str  # confirmed | refused | rolled_back | trial | unknown
    reason: str | None = None
    detail: Any = None
    seconds: float = 0.0
    bytes: int = 0
    transfer: dict = field(default_factory=dict)  # bytes, wire_bytes, compressed, seconds
    status: dict = field(default_factory=dict)  # update.status after
    console: str = ""  # what the board printed during the trial watch
    port: str = ""
    board: dict = field(default_factory=dict)  # agent, board_kind, uid, micropython
    before: dict = field(default_factory=dict)  # update.status before
    bundle: dict = field(default_factory=dict)  # what the bundle claims: app, ver, seq, ...
    main_py: str = ""  # agent | earlier_agent | other | absent
    anchors: list = field(default_factory=list)  # the board's anchor kids (on unknown_key)
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def default_deadline(size: int) -> float:
    """Seconds the transfer and install of a `size`-byte bundle may take by default."""
    return 60.0 + size / MIN_RATE


def claims(data: bytes) -> dict[str, Any]:
    """What the bundle says about itself (unverified: the board verifies), for messages."""
    rep = bundle.inspect(data)
    m = rep.get("manifest") or {}
    keys = ("app", "ver", "seq", "targets", "agent", "exp", "confirm")
    out = {k: m.get(k) for k in keys}
    out["kid"] = rep.get("kid")
    return out


def send(link: BoardLink, data: bytes, progress: Callable[[int, int], None] | None = None,
         timeout: float = 30.0, compress: bool = False, ahead: bool = False) -> dict:
    """Stream `data` into the agent's `update.install` (compressed if `compress` and smaller,
    read ahead by the board if `ahead`); return its answer (installed or refused, with the
    reason)."""
    return dict(link.stream("update.install", [], data, progress, timeout=timeout,
                            compress=compress, ahead=ahead))


def judge(status: dict, seq: Any) -> str:
    """The outcome of sequence `seq`'s trial, from the agent's state alone."""
    last = status.get("last") or {}
    trial = status.get("trial") or {}
    if last.get("seq") == seq and last.get("result") == "confirmed" and status.get("seq") == seq:
        return "confirmed"
    if last.get("seq") == seq and last.get("result") == "rolled_back":
        return "rolled_back"
    if trial.get("seq") == seq:
        return "trial"
    return "unknown"


def _look(link: BoardLink) -> tuple[dict, dict, str]:
    """(facts, update.status, /main.py state) of a board with the agent."""
    try:
        info = agentstatus.facts(link)
    except DeviceRefused as e:
        raise CommandError(f"the board's agent cannot describe the board ({e.reason}): run "
                           "`mpguard agent install`") from None
    if info is None:
        raise CommandError("the agent is not on the board: run `mpguard agent install` first")
    try:
        before = dict(link.call("update.status"))
    except DeviceError as e:  # an agent without this call: older than this host
        raise CommandError("the board's agent is too old for deploy: run `mpguard agent "
                           f"install` ({getattr(e, 'reason', e.exc_type)})") from None
    hashes = link.call("fs.hashes", [["/main.py"]])
    return info, before, agentstatus.root_state("main.py", hashes.get("/main.py"))


def _reset_during_transfer(link: BoardLink, res: DeployResult, e: BoardReset) -> dict:
    """After a reset during the transfer: the state, if the install was committed, else
    BoardReset with what the board runs."""
    try:
        link.reconnect()
        st = dict(link.call("update.status"))
    except Exception:  # noqa: BLE001  (the board is gone again: say what we know)
        raise BoardReset("the board reset during the transfer and did not answer afterwards; "
                         "check its power, then run again", e.output) from None
    if judge(st, res.bundle.get("seq")) == "trial":
        return st  # committed just before the reset: watch the trial
    runs = (f"its old app, {st.get('app')} {st.get('ver')} (sequence {st.get('seq')})"
            if st.get("app") else "no app, as before")
    raise BoardReset(f"the board reset during the transfer; it kept {runs}; run again",
                     e.output) from None


def deploy(link: BoardLink, data: bytes, *, progress: Callable[[int, int], None] | None = None,
           wait: float = 30.0, timeout: float = 30.0, deadline: float | None = None,
           run_after: bool = True) -> DeployResult:
    """Deploy `data`. `wait` bounds the trial watch, `timeout` any silence of the board,
    `deadline` (default: from the size) the transfer and install whatever the board prints."""
    t0 = time.monotonic()
    res = DeployResult("unknown", bytes=len(data), port=link.port, bundle=claims(data))
    outer = link.deadline
    link.set_deadline(default_deadline(len(data)) if deadline is None else deadline)
    if outer is not None and link.deadline is not None:
        link.deadline = min(outer, link.deadline)
    try:
        link.soft_reset()  # what main.py left behind goes (boot.py runs, main.py does not)
        info, res.before, res.main_py = _look(link)
        res.board = {k: info.get(k) for k in ("agent", "board_kind", "uid", "micropython")}
        w = agentstatus.main_py_warning(res.main_py)
        if w:
            res.warnings.append(w)
        link.soft_reset()  # the whole heap for the install (an agent as .py needs it)
        try:
            answer = send(link, data, progress, timeout, compress=bool(info.get("deflate")),
                          ahead=bool(info.get("ahead")))
        except BoardReset as e:
            answer = {"status": "installed", "seq": res.bundle.get("seq"),
                      "after_reset": _reset_during_transfer(link, res, e)}
    finally:
        link.deadline = outer
        res.transfer = dict(getattr(link, "last_transfer", {}))
    if answer.get("status") != "installed":
        res.outcome, res.reason, res.detail = "refused", answer.get("reason"), answer.get("detail")
        if res.reason == "unknown_key":
            res.anchors = list(agentstatus.anchors(link).get("kids", []))
        res.status, res.seconds = res.before, time.monotonic() - t0
        return res
    token, _ = bundle.split(data)
    link.put(token, manifest_path(hashlib.sha256(token).hexdigest()))
    seq = answer.get("seq")
    res.outcome, res.status, res.console = _watch(link, seq, wait)
    prune_manifests(link, res.status)
    if run_after and res.outcome in ("confirmed", "rolled_back"):
        link.reboot()  # leave the board running its app
    res.seconds = time.monotonic() - t0
    return res


def _watch(link: BoardLink, seq: Any, wait: float) -> tuple[str, dict, str]:
    """Reset into the trial and watch it; the outcome from the agent's state."""
    end = time.monotonic() + wait
    printed = b""
    while True:
        out = link.hard_reset(wait=max(0.0, end - time.monotonic()), until_any=HINTS)
        printed += out
        status = dict(link.call("update.status"))
        outcome = judge(status, seq)
        if outcome != "trial" or time.monotonic() >= end or not any(h in out for h in HINTS):
            return outcome, status, printed.decode("utf-8", "replace")
        # a "guard: ..." line the state does not back (the app printed it): watch on


def manifest_path(digest: str) -> str:
    """Where the board's attestation finds the manifest whose SHA-256 is `digest`."""
    return f"{MANIFEST_DIR}/m-{digest[:16]}.jws"


def prune_manifests(link: BoardLink, status: dict) -> None:
    """Remove manifests of releases the board neither runs confirmed nor has on trial."""
    keep = {manifest_path(d) for d in (status.get("digest"), (status.get("trial") or {}).get("digest"))
            if isinstance(d, str)}
    for name in link.listdir(MANIFEST_DIR):
        p = f"{MANIFEST_DIR}/{name}"
        if name.startswith("m-") and name.endswith(".jws") and p not in keep:
            link.remove(p)
