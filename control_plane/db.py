"""The state database: SQLite (embedded default, WAL, durable commits) or PostgreSQL.

Schema changes are Alembic migrations under ``control_plane/migrations``; ``upgrade`` applies
them under a lock so several processes starting at once migrate exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Connection, make_url

from control_plane.errors import GovctlError

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATE_LOCK_KEY = 0x676F7663746C0001  # "govctl" + 1, a stable advisory-lock key
# The one MetaData every table is declared on; every table in it is created by an Alembic migration
# (tests/test_schema.py compares a migrated database against it).
metadata = MetaData()


class StateError(GovctlError):
    """The state database is unreachable or not migrated."""

    http_status = 503
    exit_code = 6


def is_sqlite(engine: Engine | Connection) -> bool:
    """True for the embedded SQLite state DB."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, synchronous=FULL and BEGIN [IMMEDIATE] control."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            db = Path(u.database)
            db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # created 0600 before SQLite opens it (its -wal and -shm files take the same mode), never chmod'ed later
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_pre_ping=False)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable: the WAL is fsynced at every commit
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            mode = conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())

        return engine
    if u.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise StateError(f"unsupported state database {u.get_backend_name()!r}", hint="use sqlite:/// or postgresql+psycopg://")


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock at once (SQLite BEGIN IMMEDIATE)."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        yield conn


_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (once per process per database)."""
    key = engine.url.render_as_string(hide_password=False)
    with _migrated_lock:
        if key in _migrated:
            return
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _migration_lock(engine):
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        _migrated.add(key)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if is_sqlite(engine):
        db = Path(engine.url.database or "state.db")
        with open(db.with_name(db.name + ".migrate.lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK_KEY})
                conn.commit()


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """A migrated, process-wide engine for ``url``."""
    eng = _engines.get(url)
    if eng is None:
        eng = _engines[url] = make_engine(url)
        upgrade(eng)
    return eng
