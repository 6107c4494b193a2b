"""PostgreSQL into the repository: a base backup plus streamed WAL, restored to a point in time and to the latest."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from control_plane.context import Context
from dr.check import check
from dr.pg import WalStreamer, base_backup, restore_pg, stop_restored
from dr.service import open_repo


def _conn(rt: Context, port: int, db: str = "postgres") -> psycopg.Connection:
    c = rt.settings.services.postgres
    return psycopg.connect(host=c.host, port=port, user=c.superuser, password=rt.settings.pg_password("superuser"), dbname=db, autocommit=True)


def _rows(rt: Context, port: int, db: str) -> list[str]:
    with _conn(rt, port, db) as c:
        return [r[0] for r in c.execute("SELECT tag FROM canary ORDER BY id")]


def test_base_backup_wal_stream_and_point_in_time_restore(sqlite_runtime: Context, services, shared_tmp: Path) -> None:  # noqa: ANN001
    """Rows written before T are there after a restore to T, rows after T are not; restoring 'latest' has them all."""
    rt = sqlite_runtime
    port = rt.supervisor.port("postgres")
    db = f"drtest_{uuid.uuid4().hex[:8]}"
    with _conn(rt, port) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    with _conn(rt, port, db) as c:
        c.execute("CREATE TABLE canary (id serial PRIMARY KEY, tag text, at timestamptz DEFAULT now())")
        c.execute("INSERT INTO canary (tag) VALUES ('before-base')")
    repo = open_repo(rt)
    sid, st = base_backup(rt, repo, "state-db")
    assert st["files"] > 100
    with _conn(rt, port) as c:  # a slot left by an interrupted earlier run would hold old WAL
        c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'govctl_state_db' AND NOT active")
    wal = WalStreamer(rt, "state-db").start()
    try:
        with _conn(rt, port, db) as c:
            c.execute("INSERT INTO canary (tag) VALUES ('after-base')")
            time.sleep(1.2)
            t_mid = datetime.now(timezone.utc)
            time.sleep(1.2)
            c.execute("INSERT INTO canary (tag) VALUES ('after-t')")
        time.sleep(2)  # pg_receivewal --synchronous has flushed the commit
        shipped = wal.ship(repo)
        assert shipped and wal.alive()
    finally:
        wal.stop()
    repo2 = open_repo(rt)
    assert [s["tags"] for s in repo2.snapshots()][:1] == [["base"]] and any("wal" in s["tags"] for s in repo2.snapshots())
    at_t = shared_tmp / "at-t"
    r1 = restore_pg(rt, repo2, "state-db", at_t, to=t_mid.isoformat())
    try:
        assert _rows(rt, r1["port"], db) == ["before-base", "after-base"]
    finally:
        stop_restored(rt, at_t)
    latest = shared_tmp / "latest"
    r2 = restore_pg(rt, repo2, "state-db", latest, to="latest")
    try:
        assert _rows(rt, r2["port"], db) == ["before-base", "after-base", "after-t"]
    finally:
        stop_restored(rt, latest)
    assert check(open_repo(rt), read_data=True).ok
    with _conn(rt, port) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f"SELECT pg_drop_replication_slot('{wal.slot}')")


def test_scheduled_backup_job_runs_both_kinds_once_per_interval(sqlite_runtime: Context, services, tmp_path: Path) -> None:  # noqa: ANN001
    """dr.backup backs up every due source (files and the real PostgreSQL); run again at once, nothing is due."""
    from control_plane.config import DrSource
    from control_plane.scheduler import run_job
    from dr.service import rpo_status

    rt = sqlite_runtime
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("公文")
    object.__setattr__(rt.settings.dr, "sources", {"docs": DrSource(type="files", path=docs, every_s=3600, rpo_s=7200),
                                                   "state-db": DrSource(type="postgres", every_s=3600, rpo_s=7200)})  # fmt: skip
    r1 = run_job(rt, "dr.backup", trigger="manual")
    assert r1.status == "succeeded" and "2 backed up" in r1.detail, r1
    snaps = open_repo(rt).snapshots()
    assert {s["source"] for s in snaps} == {"docs", "state-db"} and any("base" in s["tags"] for s in snaps)
    assert run_job(rt, "dr.backup", trigger="schedule").status in ("succeeded", "skipped")  # a scheduled slot runs once at most
    r2 = run_job(rt, "dr.backup", trigger="manual")
    assert r2.status == "succeeded" and "none due" in r2.detail, r2
    assert all(r["ok"] for r in rpo_status(rt))
    assert run_job(rt, "dr.rpo", trigger="manual").status == "succeeded"
