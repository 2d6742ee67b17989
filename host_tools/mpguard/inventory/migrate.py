"""Schema migrations (Alembic), run when an inventory is opened.

1. Read the database's revision (alembic_version); at head: nothing to do, no lock taken.
   This read is a plain query and `HEAD` a constant, so opening an inventory that is up to
   date does not import Alembic (its import and script directory: 0.25 s of a command,
   docs/decisions/0021-cli-startup.md); tests/host/test_inventory_db.py checks that `HEAD`
   is the migration scripts' head.
2. A revision this mpguard does not know: refuse (the inventory was upgraded by a newer one).
3. Otherwise, in one write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: plus an advisory
   lock, so stations opening a new inventory at once migrate it once), read the revision
   again and upgrade to head. Both backends have transactional DDL: a failed upgrade leaves
   the previous schema as it was.

Alembic runs a migration through module-level state (`alembic.context`), so within one
process upgrades take turns (`_ALEMBIC`): threads that open new inventories at once (a test's
boards in parallel, a station's workers) would otherwise break each other's.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..errors import InventoryError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0002"  # the newest migration's revision (migrations/versions): a new one changes it
VERSION_TABLE = "alembic_version"  # Alembic's default, where it keeps the revision
_PG_LOCK = 0x6D7067756172  # "mpguar": the advisory lock id migrations take on PostgreSQL
_ALEMBIC = threading.Lock()


def config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head() -> str:
    """The migration scripts' head revision (HEAD is what it is)."""
    h = _script().get_current_head()
    assert h is not None  # the package ships at least the initial migration
    return h


def current(conn: sa.Connection) -> str | None:
    """The database's revision (None: an empty database, or one without our tables yet).

    What Alembic's MigrationContext.get_current_revision reads, read without Alembic."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    revs = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(revs) > 1:  # Alembic's own error for a table with several heads
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()
    return revs[0] if revs else None


def _known(rev: str | None) -> bool:
    from alembic.util.exc import CommandError

    if rev is None:
        return True
    try:
        return _script().get_revision(rev) is not None
    except CommandError:
        return False


def upgrade(engine: sa.Engine) -> list[str]:
    """Bring the schema to head; returns the revisions applied (empty: it was at head)."""
    with engine.connect() as conn:
        rev = current(conn)
    if rev == HEAD or rev == head():  # head(): Alembic's, only when not at HEAD
        return []
    if not _known(rev):
        raise InventoryError("schema_too_new", f"revision {rev}, this mpguard knows up to {head()}")
    with engine.connect().execution_options(mpguard_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        rev = current(conn)  # another process may have migrated while we waited
        if not _known(rev):
            raise InventoryError("schema_too_new", f"revision {rev}")
        todo = _pending(rev)
        if todo:
            from alembic import command

            cfg = config()
            cfg.attributes["connection"] = conn
            with _ALEMBIC:
                command.upgrade(cfg, "head")
    return todo


def _pending(rev: str | None) -> list[str]:
    """Revisions from `rev` (exclusive) to head, oldest first."""
    revs = _script().iterate_revisions(head(), rev)
    return [r.revision for r in reversed(list(revs))]


def downgrade(engine: sa.Engine, to: str = "base") -> None:
    """For tests and developers: take the schema down to `to` (drops data with the tables)."""
    from alembic import command

    with engine.connect().execution_options(mpguard_write=True) as conn, conn.begin():
        cfg = config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, to)
