"""Unauthenticated services: Elasticsearch, PostgreSQL, Prometheus' lifecycle API, the scheduler's job store."""

from __future__ import annotations

import os
import pickle
import ssl
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from elasticsearch import AuthenticationException, AuthorizationException

from control_plane.es import client, client_for
from control_plane.context import Context
from control_plane.services import Supervisor
from control_plane.services.es_security import ANALYST_USER, SHIPPER_USER, load_credentials
from control_plane.soc.ingest import Ingestor
from control_plane.soc.schema import DEADLETTER_INDEX, events_index


def test_elasticsearch_refuses_anonymous_and_plain_http(services: Supervisor) -> None:
    """No credentials: 401; plain HTTP on the TLS port: no answer that a client would take for Elasticsearch."""
    es = services.settings.services.elasticsearch
    ctx = ssl.create_default_context(cafile=str(services.settings.es_ca_path()))
    r = httpx.get(f"https://{es.host}:{services.port('elasticsearch')}/_cluster/health", verify=ctx)
    assert r.status_code == 401
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{es.host}:{services.port('elasticsearch')}/_cluster/health", timeout=5).raise_for_status()
    anon = client(es.url, ca_certs=str(services.settings.es_ca_path()))
    with pytest.raises(AuthenticationException):
        anon.search(index="soc-events-*", size=1)


def test_each_component_has_only_its_privileges(services: Supervisor) -> None:
    """The shipper may only create events (no reads, no deletes, no alerts); the analyst may only read."""
    s = services.settings
    shipper, analyst = client_for(s, user=SHIPPER_USER), client_for(s, user=ANALYST_USER)
    idx = events_index()
    shipper.index(index=idx, document={"@timestamp": "2026-12-01T00:00:00Z", "message": "shipped"}, op_type="create")
    for attempt in (lambda: shipper.search(index=idx, size=1),
                    lambda: shipper.index(index="soc-alerts", document={"status": "closed"}),
                    lambda: shipper.index(index=idx, id="x1", document={"message": "overwrite"}, op_type="index"),
                    lambda: shipper.indices.delete(index=idx),
                    lambda: analyst.index(index=idx, document={"message": "forged"}),
                    lambda: analyst.indices.delete(index="soc-alerts")):  # fmt: skip
        with pytest.raises(AuthorizationException):
            attempt()
    client_for(s).indices.refresh(index=idx)
    assert analyst.count(index=idx)["count"] >= 1  # reading is what the analyst may do


def test_credentials_are_generated_and_private(services: Supervisor) -> None:
    """The components' passwords were generated at first start and sit in a 0600 file; the node has hashes only."""
    s = services.settings
    creds = load_credentials(s.es_credentials_path())
    assert oct(s.es_credentials_path().stat().st_mode & 0o777) == "0o600"
    assert len(set(creds.values())) == len(creds) and all(len(v) >= 24 for v in creds.values())
    users_file = (services.root / "elasticsearch" / "config" / "users").read_text()
    assert all(pw not in users_file for pw in creds.values()) and "{PBKDF2}" in users_file


def test_an_event_that_fails_the_mapping_is_dead_lettered_not_half_indexed(services: Supervisor, tmp_path: Path) -> None:
    """A template string where an address belongs is refused by the mapping and kept in the dead-letter index."""
    es = client_for(services.settings)
    marker = f"inject-{os.getpid()}-{time.time_ns()}"
    ev = {"@timestamp": "2026-12-01T00:00:00Z", "message": marker, "host": {"name": "prim-app-1"},
          "event": {"module": "syslog", "category": ["authentication"], "outcome": "success", "action": "ssh_login"},
          "source": {"ip": "{{ lookup('pipe','id > /tmp/govctl-pwned') }}"}, "user": {"name": "root"}, "process": {"name": "sshd"}}  # fmt: skip
    res = Ingestor(es, tmp_path / "spool").ingest_documents([ev], source="test")
    assert res.indexed == 0 and res.dead_lettered == 1
    es.indices.refresh(index="soc-events-*,soc-deadletter", ignore_unavailable=True)
    assert es.count(index="soc-events-*", query={"match_phrase": {"message": marker}})["count"] == 0
    dl = [h["_source"] for h in es.search(index=DEADLETTER_INDEX, size=200, sort=[{"@timestamp": "desc"}])["hits"]["hits"]]
    mine = [d for d in dl if marker in d["original"]]
    assert len(mine) == 1 and "source.ip" in mine[0]["reason"]  # the whole original kept, with why it was refused


def test_postgres_role_is_no_superuser_and_defaults_are_gone(services: Supervisor) -> None:
    """The control plane's role cannot run programs; the old default password and trust logins do not work."""
    s = services.settings
    pg = s.services.postgres
    url = dict(host=pg.host, port=services.port("postgres"), dbname=pg.database, connect_timeout=5)
    with psycopg.connect(**url, user=pg.user, password=s.pg_password("app"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'touch /tmp/govctl-pwned'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE govctl SUPERUSER")
    for user, pw in ((pg.user, "govctl-local"), (pg.superuser, "postgres"), (pg.user, "")):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**url, user=user, password=pw)
    hba = (services.root / "postgres" / "data" / "pg_hba.conf").read_text()
    assert "trust" not in hba and "0.0.0.0" not in hba and "scram-sha-256" in hba
    assert oct(s.pg_credentials_path().stat().st_mode & 0o777) == "0o600"
    assert not Path("/tmp/govctl-pwned").exists()


def test_prometheus_lifecycle_api_is_off(services: Supervisor) -> None:
    """/-/quit and /-/reload are refused, and Prometheus keeps running."""
    url = services.settings.services.prometheus.url
    for path in ("/-/quit", "/-/reload"):
        assert httpx.post(f"{url}{path}", timeout=5).status_code in (403, 404, 405)
    assert httpx.get(f"{url}/-/ready", timeout=5).status_code == 200


def test_job_store_holds_no_pickles(sqlite_runtime: Context, tmp_path: Path) -> None:
    """Jobs are stored as JSON; a pickle planted in the store is dropped, never unpickled."""
    from sqlalchemy import text

    from control_plane.scheduler.service import build, sync_jobs

    rt = sqlite_runtime
    sched = build(rt)
    sched.start(paused=True)
    try:
        sync_jobs(rt, sched)
        with rt.engine.connect() as conn:
            states = [r[0] for r in conn.execute(text("SELECT job_state FROM apscheduler_jobs"))]
        assert states and all(bytes(s).startswith(b"{") for s in states)

        canary = tmp_path / "unpickled"

        class Evil:
            def __reduce__(self):  # noqa: ANN204
                return (open, (str(canary), "w"))

        with rt.engine.begin() as conn:
            conn.execute(text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES ('evil', 0, :s)"),
                         {"s": pickle.dumps({"version": 1, "x": Evil()})})  # fmt: skip
        jobs = sched.get_jobs()
        assert "evil" not in {j.id for j in jobs} and not canary.exists()
    finally:
        sched.shutdown(wait=False)
