"""`mpguard agent uninstall`: put a board back as it was before `mpguard agent install`.

Steps (mpremote's own file operations only: it works on a board whose agent is broken):
1. the root files first, so an interrupted uninstall still boots the user's files: where
   /boot.py or /main.py is the agent's stub, the user's file kept in /mpguard/backup/ by the
   install goes back, or, with no backup (the board had none), the stub is removed. A root
   file that is not the agent's stub (the user put it there since) stays as it is, and a
   different backup of it is put beside it as /main.py.orig (or /boot.py.orig), never lost.
2. the agent's files: /app (the installed apps, both slots), /lib/guard (the agent),
   /mpguard (state, trust anchors, backups); /lib too when nothing else is left in it;
   then a soft reset, so no agent module stays loaded.

A board that holds its identity (its key, a pending key, a random UEID, its secrets) is
refused unless `force`: removing /mpguard destroys them for good.

Run again after an interruption: every step is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from ..errors import CommandError
from ..link import BoardLink
from .install import AGENT_DIR, BACKUP
from .status import ROOT, root_state

REMOVE = ("/app", AGENT_DIR, "/mpguard")


@dataclass
class UninstallReport:
    port: str
    restored: list[str] = field(default_factory=list)  # root files put back from a backup
    removed: list[str] = field(default_factory=list)  # every file removed
    kept: list[str] = field(default_factory=list)  # a user's root file left as it is
    beside: list[str] = field(default_factory=list)  # a backup put beside a user's file

    def as_dict(self) -> dict:
        return asdict(self)


# What removing /mpguard destroys for good: the board's identity key (its only copy), a pending
# one, a random UEID, its sealed secrets (guard.identity, guard.rotate via guard.store).
IDENTITY = ("/mpguard/id", "/mpguard/id.new", "/mpguard/ueid", "/mpguard/sec")


def uninstall(link: BoardLink, *, force: bool = False) -> UninstallReport:
    held = [p for p in IDENTITY if link.exists(p)]
    if held and not force:  # before anything is changed
        raise CommandError(
            f"the board holds its identity ({', '.join(held)}): uninstalling deletes its private "
            "key and secrets for good, and the inventory would keep a certificate for a key "
            "that no longer exists; revoke it first (`mpguard devices revoke UEID`), then run "
            "again with --force")
    rep = UninstallReport(link.port)
    for path in ROOT:
        name = path[1:]
        backup = f"{BACKUP}/{name}"
        saved = link.get(backup) if link.exists(backup) else None
        state = root_state(name, link.sha256(path))
        if state in ("agent", "earlier_agent"):
            if saved is not None:
                link.put(saved, path)
                rep.restored.append(path)
            else:
                link.remove(path)
                rep.removed.append(path)
        elif state == "other":
            rep.kept.append(path)
            if saved is not None and hashlib.sha256(saved).hexdigest() != link.sha256(path):
                link.put(saved, path + ".orig")
                rep.beside.append(path + ".orig")
    for folder in REMOVE:
        rep.removed += link.rmtree(folder)
    if link.exists("/lib") and not link.listdir("/lib"):
        link.rmtree("/lib")
    link.soft_reset()  # the agent's modules may still be loaded: no agent answers from now
    return rep
