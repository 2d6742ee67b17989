"""Where the inventory lives and how it is reached: URL, engine, and database errors made typed.

- URL: `--db URL`, else the project config's `inventory` key, else `<project>/inventory.db`
  (SQLite). `postgresql://` uses psycopg 3; a relative SQLite path is taken from the project.
- SQLite: WAL journal, foreign keys on, a busy timeout; a write transaction starts with
  `BEGIN IMMEDIATE`, so two writers queue on the lock instead of one failing at its first write
  (a deferred transaction cannot wait to upgrade a read lock in WAL mode). Switching a new
  database to WAL is refused at once (SQLITE_BUSY, no busy handler) while another connection
  is in a transaction on it: stations opening a new inventory together retry the switch
  until the busy timeout.
- PostgreSQL: a connect timeout, and `lock_timeout` = the busy timeout, so a locked table is an
  error after the same wait as on SQLite; pooled connections are renewed after RECYCLE seconds.
- Every message names the database with its password masked (`***`), never the password.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ..errors import DuplicateIdentity, InventoryError, InventoryUnavailable

DEFAULT_FILE = "inventory.db"
CONFIG_KEY = "inventory"
BACKENDS = ("sqlite", "postgresql")
RECYCLE = 300  # seconds a pooled PostgreSQL connection is reused
# unique constraint -> reason (names from schema.NAMING; SQLite reports table.column)
_UNIQUE = {
    "ueid": "duplicate_ueid",
    "public_key": "duplicate_key",
    "thumbprint": "duplicate_key",
    "serial": "duplicate_serial",
}
# PostgreSQL SQLSTATE classes that mean "cannot reach or use this database at all"
_PG_UNREACHABLE = ("08", "28", "3D", "57")
_PG_LOCKED = ("55P03", "40P01", "40001")  # lock_not_available, deadlock, serialization


def resolve_url(url: str | None, project_root: Path | None) -> sa.URL:
    """The database URL to open: explicit, else the project's config, else its SQLite file."""
    if url is None and project_root is not None:
        url = _config_url(Path(project_root))
    if url is None:
        if project_root is None:
            raise InventoryError("bad_db_url", "no --db URL and no project")
        url = f"sqlite:///{Path(project_root).resolve() / DEFAULT_FILE}"
    try:
        u = sa.make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise InventoryError("bad_db_url", "not a database URL") from None
    backend = u.get_backend_name()
    if backend not in BACKENDS:
        raise InventoryError("bad_db_url", f"{backend}: only sqlite and postgresql are supported")
    if backend == "postgresql":
        if u.drivername not in ("postgresql", "postgresql+psycopg"):
            raise InventoryError("bad_db_url", f"{u.drivername}: use postgresql:// (psycopg 3)")
        return u.set(drivername="postgresql+psycopg")
    if u.drivername != "sqlite" or not u.database or u.database == ":memory:" or u.query:
        raise InventoryError("bad_db_url", "sqlite:///PATH to a file (not in memory)")
    path = Path(u.database)
    if not path.is_absolute() and project_root is not None:
        path = Path(project_root).resolve() / path
    return u.set(database=str(path))


def _config_url(root: Path) -> str | None:
    """The `inventory` key of the project's mpguard.json, if the project sets one."""
    from ..project import CONFIG_NAME, load

    if not (root / CONFIG_NAME).exists():
        return None
    value = load(root).config.get(CONFIG_KEY)
    if value is not None and not isinstance(value, str):
        raise InventoryError("bad_db_url", f"{CONFIG_KEY!r} in {CONFIG_NAME} must be a URL string")
    return value


def mask(url: sa.URL) -> str:
    """The URL as shown to people: password (also a `password=` query value) as ***."""
    if "password" in url.query:
        url = url.update_query_dict({"password": "***"})
    return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def create_engine(url: sa.URL, *, busy_timeout: float, connect_timeout: float) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout},
                                  json_serializer=_dumps)
        sa.event.listen(engine, "connect", functools.partial(_sqlite_connect, busy_timeout=busy_timeout))
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    options = f"-c lock_timeout={int(busy_timeout * 1000)}"
    if "options" in url.query:
        options = f"{url.query['options']} {options}"
    # No pre-ping: it costs three of a lookup's six round trips. A connection the server dropped
    # fails its next use once (InventoryUnavailable, nothing written) and the pool reconnects;
    # connections idle longer than RECYCLE seconds are replaced before use.
    return sa.create_engine(
        url, pool_recycle=RECYCLE, json_serializer=_dumps,
        connect_args={"connect_timeout": max(1, round(connect_timeout)), "options": options})


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False)


_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)


def _sqlite_connect(dbapi_conn: Any, _record: Any, *, busy_timeout: float) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin
    cur = dbapi_conn.cursor()
    deadline = time.monotonic() + busy_timeout
    pause = 0.002
    while True:  # WAL is the database's own setting: set once, a no-op after that
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            if code not in _SQLITE_BUSY or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    write = conn.get_execution_options().get("mpguard_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def translated(url: sa.URL) -> Iterator[None]:
    """Database exceptions -> InventoryError subclasses naming the (masked) database."""
    try:
        yield
    except sa_exc.IntegrityError as e:
        raise _integrity(e) from None
    except sa_exc.ProgrammingError:
        raise  # a bug in mpguard's SQL: keep its traceback
    except (sa_exc.DatabaseError, sa_exc.InterfaceError) as e:  # locked, unreachable, corrupt
        raise _unavailable(url, e) from None


def _integrity(e: sa_exc.IntegrityError) -> InventoryError:
    orig = e.orig
    diag = getattr(orig, "diag", None)
    where = getattr(diag, "constraint_name", None) or str(orig)
    for column, reason in _UNIQUE.items():
        if re.search(rf"(uq_\w+_|\.){column}\b", where):
            cls = InventoryError if reason == "duplicate_serial" else DuplicateIdentity
            return cls(reason, "another writer recorded it first")
    return InventoryError("bad_record", _first_line(str(orig)))


def _unavailable(url: sa.URL, e: sa_exc.DBAPIError) -> InventoryUnavailable:
    orig = e.orig
    text = _first_line(str(orig))
    for secret in (url.password, url.query.get("password")):
        if secret:
            text = text.replace(str(secret), "***")
    where = mask(url)
    if url.get_backend_name() == "sqlite":
        if "locked" in text or "busy" in text:
            return InventoryUnavailable("inventory_locked", f"{where}: {text}")
        if "unable to open" in text:
            return InventoryUnavailable("inventory_unreachable", f"{where}: {text}")
        return InventoryUnavailable("inventory_unavailable", f"{where}: {text}")
    state = getattr(orig, "sqlstate", None) or ""
    if state in _PG_LOCKED:
        return InventoryUnavailable("inventory_locked", f"{where}: {text}")
    if not state or state.startswith(_PG_UNREACHABLE):
        return InventoryUnavailable("inventory_unreachable", f"{where}: {text}")
    return InventoryUnavailable("inventory_unavailable", f"{where}: {text}")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no detail"
    return line[:300]
