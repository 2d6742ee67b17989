"""The inventory's databases: migrations, locks, unreachable servers, concurrent writers, URLs.

Every test runs on SQLite and on the session's real PostgreSQL server (tests/inventory_db.py).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import traceback

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mpguard import reasons
from mpguard.inventory import (
    DuplicateIdentity,
    Inventory,
    InventoryError,
    InventoryUnavailable,
    db,
    migrate,
    schema,
)

TABLES = {"devices", "certificates", "events", "alembic_version", "line_stations", "line_boards",
          "line_steps"}


def engine_for(url: str) -> sa.Engine:
    return db.create_engine(db.resolve_url(url, None), busy_timeout=2, connect_timeout=5)


def test_migrations_from_empty_to_head_and_a_second_open_is_a_no_op(inventory_url, fleet):
    eng = engine_for(inventory_url)
    try:
        assert set(sa.inspect(eng).get_table_names()) == set()
        assert migrate.upgrade(eng) == ["0001", "0002"]
        assert set(sa.inspect(eng).get_table_names()) == TABLES
        with eng.connect() as conn:
            assert migrate.current(conn) == migrate.head()
        assert migrate.upgrade(eng) == []  # at head: nothing applied
        with Inventory.open(inventory_url) as inv:  # opening again changes nothing either
            assert inv.schema_version == migrate.head()
            fleet.add(inv, 1)
        with Inventory.open(inventory_url) as inv:
            assert [d.ueid for d in inv.devices()] == [fleet.ueid(1)]
    finally:
        eng.dispose()


def test_head_is_the_migration_scripts_head():
    """migrate.HEAD lets an inventory at head open without Alembic: it must be the newest
    migration's revision (a new migration changes it)."""
    assert migrate.HEAD == migrate.head()


def test_an_inventory_at_an_older_revision_is_upgraded_when_opened(inventory_url, fleet):
    eng = engine_for(inventory_url)
    try:
        migrate.upgrade(eng)
        migrate.downgrade(eng, "0001")
        with eng.connect() as conn:
            assert migrate.current(conn) == "0001"
            # the plain query reads what Alembic reads
            assert migrate.current(conn) == MigrationContext.configure(conn).get_current_revision()
        with Inventory.open(inventory_url) as inv:
            assert inv.schema_version == migrate.HEAD
            fleet.add(inv, 1)
        assert set(sa.inspect(eng).get_table_names()) == TABLES
    finally:
        eng.dispose()


def _open_station(url: str, start: threading.Barrier, results: list[object]) -> None:
    start.wait()
    try:
        with Inventory.open(url, busy_timeout=30) as inv:
            results.append(inv.schema_version)
    except BaseException as e:  # reported below, in the test's thread
        results.append(e)


def _stations_open_together(url: str) -> list[object]:
    """Four stations open the inventory at `url` at once: each one's schema version, or what it
    raised."""
    start = threading.Barrier(4)
    results: list[object] = []
    threads = [threading.Thread(target=_open_station, args=(url, start, results))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_stations_opening_a_new_inventory_together_migrate_it_once(inventory_url):
    assert _stations_open_together(inventory_url) == [migrate.head()] * 4


def test_stations_opening_new_sqlite_inventories_together_never_find_them_locked(tmp_path):
    """SQLite refuses to switch a file to WAL at once (SQLITE_BUSY, no busy handler) while
    another connection of the file writes: a station opening a new inventory with three others
    failed "locked" in 1 of 1-3 new files (the test above, now and then), whatever its busy
    timeout. Fifteen new files, four stations each at once."""
    for i in range(15):
        results = _stations_open_together(f"sqlite:///{tmp_path}/new-{i}.db")
        assert results == [migrate.HEAD] * 4, f"file {i}"


def test_threads_migrating_inventories_of_their_own_at_once(tmp_path):
    """Alembic's migration state is the process's: upgrades of different inventories in
    threads of one process take turns (a test's boards in parallel, say), and all reach head."""
    start = threading.Barrier(4)
    results: list[object] = []

    def board(i: int) -> None:
        start.wait()
        try:
            with Inventory.open(f"sqlite:///{tmp_path / f'inv{i}.db'}") as inv:
                results.append(inv.schema_version)
        except BaseException as e:  # reported below, in the test's thread
            results.append(e)

    threads = [threading.Thread(target=board, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [migrate.head()] * 4


def test_downgrade_to_empty_and_up_again(inventory_url):
    eng = engine_for(inventory_url)
    try:
        migrate.upgrade(eng)
        migrate.downgrade(eng, "base")
        assert set(sa.inspect(eng).get_table_names()) <= {"alembic_version"}
        assert migrate.upgrade(eng) == ["0001", "0002"]
    finally:
        eng.dispose()


def test_migrations_match_the_table_definitions(inventory):
    """Alembic's autogenerate finds nothing to add: migrations and schema.py never drift."""
    with inventory._engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True,
                                                    "compare_server_default": True})
        assert compare_metadata(mc, schema.metadata) == []
        # and the comparison does see a drift: a column the migrations never added
        drifted = sa.MetaData(naming_convention=schema.NAMING)
        for t in schema.metadata.tables.values():
            t.to_metadata(drifted)
        drifted.tables["devices"].append_column(sa.Column("colour", sa.String(8)))
        diff = compare_metadata(mc, drifted)
        assert [(d[0], d[3].name) for d in diff] == [("add_column", "colour")]


def test_an_inventory_from_a_newer_mpguard_is_refused(inventory_url):
    with Inventory.open(inventory_url) as inv, inv._engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(InventoryError) as e:
        Inventory.open(inventory_url)
    assert e.value.reason == "schema_too_new" and "9999" in str(e.value)


def hold_write_lock(inventory_url: str):
    """Another client holding the inventory's write lock: (release function)."""
    if inventory_url.startswith("sqlite"):
        other = sqlite3.connect(inventory_url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM events")  # uncommitted: must not be seen or kept
    else:
        import psycopg

        u = sa.make_url(inventory_url)
        other = psycopg.connect(dbname=u.database, user=u.username, host=u.query["host"],
                                options=u.query["options"])
        other.execute("LOCK TABLE devices, certificates, events IN EXCLUSIVE MODE")
    return lambda: (other.rollback(), other.close())


def test_a_locked_inventory_is_unavailable_and_nothing_changes(inventory_url, fleet):
    with Inventory.open(inventory_url) as inv:
        fleet.add(inv, 1)
    release = hold_write_lock(inventory_url)
    try:
        with Inventory.open(inventory_url, busy_timeout=0.2) as inv:
            with pytest.raises(InventoryUnavailable) as e:
                fleet.add(inv, 2)
    finally:
        release()
    assert e.value.reason == "inventory_locked" and e.value.exit_code == reasons.EXIT_INVENTORY
    assert "locked by another writer" in str(e.value)
    assert ("inventory.db" if inventory_url.startswith("sqlite") else "/inventory") in str(e.value)
    with Inventory.open(inventory_url) as inv:
        assert [d.ueid for d in inv.devices()] == [fleet.ueid(1)]
        assert len(inv.events()) == 1


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    return port


def unreachable_url(backend: str, tmp_path, password: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'inventory.db'}"
    return f"postgresql://station:{password}@127.0.0.1:{closed_port()}/inventory"


UNREACHABLE = {
    "sqlite: file in a missing folder": ("inventory_unreachable", "no-such-folder"),
    "sqlite: not a database file": ("inventory_unavailable", "not a database"),
    "postgresql: nothing listens on the port": ("inventory_unreachable", "station:***@127.0.0.1"),
    "postgresql: no such database": ("inventory_unreachable", "does not exist"),
}


@pytest.mark.parametrize("case", UNREACHABLE)
def test_an_unreachable_inventory_is_a_clear_error(case, tmp_path, request):
    reason, shown = UNREACHABLE[case]
    if case.startswith("sqlite: not"):
        (tmp_path / "inventory.db").write_bytes(b"this is not a SQLite file" * 100)
        url = f"sqlite:///{tmp_path / 'inventory.db'}"
    elif case.startswith("postgresql: no such"):
        url = request.getfixturevalue("pg_server").url().replace("/inventory?", "/nope?")
    else:
        url = unreachable_url(case.split(":")[0], tmp_path, "pw")
    with pytest.raises(InventoryUnavailable) as e:
        Inventory.open(url, connect_timeout=2)
    assert e.value.reason == reason and e.value.exit_code == reasons.EXIT_INVENTORY
    assert shown in str(e.value), str(e.value)
    assert not (tmp_path / "no-such-folder").exists()


def test_the_password_is_masked_in_errors_and_repr(tmp_path, pg_server):
    """PostgreSQL only: a SQLite URL has no password."""
    secret = "s3cret-Pa55"
    url = unreachable_url("postgresql", tmp_path, secret)
    with pytest.raises(InventoryUnavailable) as e:
        Inventory.open(url, connect_timeout=2)
    shown = "".join(traceback.format_exception(e.value)) + repr(e.value)
    assert secret not in shown and "station:***@127.0.0.1" in str(e.value)
    # the session's server trusts local connections, so it opens with any password
    for opened in (pg_server.new_schema(password=secret),
                   pg_server.new_schema() + "&password=" + secret):
        with Inventory.open(opened) as inv:
            assert secret not in repr(inv) and secret not in inv.url and "***" in inv.url


def test_a_dropped_connection_fails_once_then_reconnects(pg_server, fleet):
    """PostgreSQL only: the server ends the pooled connection (a restart, an admin)."""
    import psycopg

    with Inventory.open(pg_server.new_schema()) as inv:
        fleet.add(inv, 1)
        with psycopg.connect(pg_server.url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = 'inventory' AND pid <> pg_backend_pid()")
        with pytest.raises(InventoryUnavailable) as e:
            fleet.add(inv, 2)
        assert e.value.reason == "inventory_unreachable"
        fleet.add(inv, 2)  # the pool reconnected; the failed write left nothing behind
        assert [d.ueid for d in inv.devices()] == [fleet.ueid(1), fleet.ueid(2)]
        assert len(inv.events()) == 2


def test_concurrent_writers_lose_nothing(inventory_url, fleet):
    """Four stations (own connections) add 15 boards each at once: all 60 are there, once."""
    idents = {n: fleet.identity(n) for n in range(60)}
    Inventory.open(inventory_url).close()  # migrated before the race starts
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def station(k: int) -> None:
        try:
            with Inventory.open(inventory_url, busy_timeout=30) as inv:
                start.wait()
                for n in range(k, 60, 4):
                    fleet.add(inv, n, idents[n], station=f"st-{k}")
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Inventory.open(inventory_url) as inv:
        devs = inv.devices()
        assert sorted(d.ueid for d in devs) == sorted(fleet.ueid(n) for n in range(60))
        assert len(inv.events(kind="provision")) == 60
        assert {d.station for d in devs} == {f"st-{k}" for k in range(4)}


def test_concurrent_same_board_exactly_one_wins(inventory_url, fleet):
    """Four stations offer the same UEID at once: one is recorded, three get DuplicateIdentity."""
    idents = [fleet.identity(500 + k) for k in range(4)]
    Inventory.open(inventory_url).close()
    start = threading.Barrier(4)
    results: list[object] = []

    def station(k: int) -> None:
        with Inventory.open(inventory_url, busy_timeout=30) as inv:
            start.wait()
            try:
                results.append(fleet.add(inv, 7, idents[k]))
            except DuplicateIdentity as e:
                results.append(e.reason)

    threads = [threading.Thread(target=station, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, results)).count("duplicate_ueid") == 3, results
    with Inventory.open(inventory_url) as inv:
        assert len(inv.devices()) == 1 and len(inv.events()) == 1


def test_url_from_the_project_config_and_the_default_file(inventory_url, tmp_path, fleet):
    (tmp_path / "mpguard.json").write_text(json.dumps({
        "mpguard": 1, "targets": ["esp32"], "release_keys": [], "anchors": "anchors.json",
        "releases": "releases.json", "inventory": inventory_url}))
    with Inventory.open(project_root=tmp_path) as inv:
        fleet.add(inv, 1)
    with Inventory.open(inventory_url) as inv:  # the same database
        assert inv.device(fleet.ueid(1)) is not None
    bare = tmp_path / "bare"
    bare.mkdir()
    with Inventory.open(project_root=bare) as inv:  # no config: <project>/inventory.db, WAL
        assert inv.url == f"sqlite:///{bare / 'inventory.db'}" and inv.devices() == []
        with inv._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (bare / "inventory.db").exists()


@pytest.mark.parametrize("url", [
    "mysql://u@h/db", "postgresql+psycopg2://u@h/db", "sqlite://", "sqlite:///:memory:",
    "not a url", "sqlite:///x.db?mode=ro",
])
def test_unusable_urls_are_refused(url):
    with pytest.raises(InventoryError) as e:
        Inventory.open(url)
    assert e.value.reason == "bad_db_url" and e.value.exit_code == reasons.EXIT_USAGE


def test_the_migrations_ship_in_the_package():
    """Every migration file matches a package-data pattern, so an installed mpguard has them."""
    import tomllib
    from pathlib import Path

    root = Path(migrate.__file__).resolve().parents[1]  # host_tools/mpguard
    pyproject = tomllib.loads((root.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["mpguard"]
    shipped = {p for pat in patterns for p in root.glob(pat)}
    files = {p for p in migrate.MIGRATIONS.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert len(files) >= 3 and files <= shipped, sorted(map(str, files - shipped))
