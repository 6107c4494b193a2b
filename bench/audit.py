"""Audit ledger throughput: durable appends/s (SQLite, PostgreSQL) and verification records/s.

Baselines run in the same process: a raw driver insert with the same durability (SQLite WAL with
synchronous=FULL and BEGIN IMMEDIATE; PostgreSQL one commit per row), so the ratio shows what the
chain (head read, SM3, canonical encoding, SQLAlchemy) costs on top of the database itself.
PostgreSQL is our own cluster, started here if it is not running (and stopped again).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from control_plane.audit import AuditEvent, Ledger  # noqa: E402
from control_plane.audit.models import GENESIS, canonical_json, params_digest, record_hash  # noqa: E402
from control_plane.clock import now_iso as utc_now_iso  # noqa: E402
from control_plane.config import load  # noqa: E402
from control_plane.crypto import SM2PrivateKey  # noqa: E402
from control_plane.db import make_engine, upgrade  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402

APPENDS = int(os.environ.get("BENCH_APPENDS", "3000"))
VERIFY_RECORDS = int(os.environ.get("BENCH_VERIFY_RECORDS", "200000"))
SIGNER = SM2PrivateKey.generate()


def event(i: int) -> AuditEvent:
    """A typical record: an operator deploying, with a few parameters."""
    return AuditEvent(actor=f"ops{i % 7}", role="ops_engineer", source="10.1.2.3", operation="deploy.up",
                      target="primary-pool", params={"stack": "prod", "i": i}, request_id=f"req-{i}")  # fmt: skip


def appends_per_s(led: Ledger, n: int) -> float:
    """Durable appends per second through the ledger."""
    t0 = time.perf_counter()
    for i in range(n):
        led.append(event(i))
    return n / (time.perf_counter() - t0)


def raw_sqlite_per_s(path: Path, n: int) -> float:
    """Durable single-row transactions per second with the bare sqlite3 driver."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT, h TEXT)")
    t0 = time.perf_counter()
    for i in range(n):
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t (body, h) VALUES (?, ?)", (canonical_json(event(i).__dict__), "0" * 64))
        c.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    c.close()
    return rate


def raw_pg_per_s(dsn: dict, n: int) -> float:
    """Durable single-row commits per second with the bare psycopg driver."""
    with psycopg.connect(**dsn) as c:
        c.execute("DROP TABLE IF EXISTS bench_raw")
        c.execute("CREATE TABLE bench_raw (seq BIGSERIAL PRIMARY KEY, body TEXT, h TEXT)")
        c.commit()
        t0 = time.perf_counter()
        for i in range(n):
            c.execute("INSERT INTO bench_raw (body, h) VALUES (%s, %s)", (canonical_json(event(i).__dict__), "0" * 64))
            c.commit()
        rate = n / (time.perf_counter() - t0)
        c.execute("DROP TABLE bench_raw")
        c.commit()
    return rate


def build_chain(led: Ledger, n: int) -> None:
    """Write a valid n-record chain quickly (bulk inserts), with a signed checkpoint every 1,000 records."""
    from control_plane.audit.models import records

    prev, rows = GENESIS, []
    with led.engine.begin() as conn:
        for seq in range(1, n + 1):
            e = event(seq)
            row = {"seq": seq, "ts": utc_now_iso(), "actor": e.actor, "role": e.role, "source": e.source,
                   "operation": e.operation, "target": e.target, "params_digest": params_digest(e.params),
                   "decision": e.decision, "outcome": e.outcome, "request_id": e.request_id, "details": "{}"}  # fmt: skip
            row["prev_hash"] = prev
            row["hash"] = prev = record_hash(prev, row)
            rows.append(row)
            if len(rows) == 10_000:
                conn.execute(records.insert(), rows)
                rows = []
        if rows:
            conn.execute(records.insert(), rows)
    for seq in range(1000, n + 1, 1000):
        with led.engine.connect() as conn:
            h = conn.exec_driver_sql(f"SELECT hash FROM audit_records WHERE seq = {seq}").scalar()
        led._checkpoint_at(seq, h)


def main() -> None:
    """Measure and print; end with the RESULT line."""
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-"))
    eng = make_engine(f"sqlite:///{tmp / 'state.db'}")
    upgrade(eng)
    led = Ledger(eng, SIGNER, anchor_file=tmp / "anchors.jsonl", checkpoint_every=1000)
    raw_sqlite = raw_sqlite_per_s(tmp / "raw.db", APPENDS)
    sqlite_rate = appends_per_s(led, APPENDS)
    print(f"sqlite   ledger {sqlite_rate:8.0f} appends/s   raw driver {raw_sqlite:8.0f} tx/s   ratio {sqlite_rate / raw_sqlite:.2f}")

    settings = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(settings)
    started = [s.name for s in sup.status(["postgres"]) if s.health != "healthy"]
    sup.up(["postgres"])
    try:
        pg = settings.services.postgres
        dsn = dict(host=pg.host, port=sup.port("postgres"), user=pg.superuser, password=settings.pg_password("superuser"), dbname="postgres", autocommit=False)
        with psycopg.connect(**{**dsn, "autocommit": True}) as c:
            c.execute("DROP DATABASE IF EXISTS govctl_bench WITH (FORCE)")
            c.execute("CREATE DATABASE govctl_bench")
        peng = make_engine(sup.postgres_url("govctl_bench"))
        upgrade(peng)
        pled = Ledger(peng, SIGNER, checkpoint_every=1000)
        raw_pg = raw_pg_per_s({**dsn, "dbname": "govctl_bench"}, APPENDS)
        pg_rate = appends_per_s(pled, APPENDS)
        print(f"postgres ledger {pg_rate:8.0f} appends/s   raw driver {raw_pg:8.0f} tx/s   ratio {pg_rate / raw_pg:.2f}")
        peng.dispose()
        with psycopg.connect(**{**dsn, "autocommit": True}) as c:
            c.execute("DROP DATABASE IF EXISTS govctl_bench WITH (FORCE)")
    finally:
        if started:
            sup.down(started)

    veng = make_engine(f"sqlite:///{tmp / 'verify.db'}")
    upgrade(veng)
    vled = Ledger(veng, SIGNER, anchor_file=tmp / "verify-anchors.jsonl", checkpoint_every=1000)
    build_chain(vled, VERIFY_RECORDS)
    rep = vled.verify()
    assert rep.ok, rep.problem
    verify_rate = rep.records / rep.seconds
    print(f"verify   {rep.records} records, {rep.checkpoints} SM2 checkpoints in {rep.seconds:.2f}s = {verify_rate:,.0f} records/s")
    print(
        f"RESULT sqlite_appends_per_s={sqlite_rate:.0f} ratio_sqlite_vs_raw_driver={sqlite_rate / raw_sqlite:.2f} "
        f"pg_appends_per_s={pg_rate:.0f} ratio_pg_vs_raw_driver={pg_rate / raw_pg:.2f} "
        f"verify_records_per_s={verify_rate:.0f} verify_checkpoints={rep.checkpoints}"
    )


if __name__ == "__main__":
    main()
