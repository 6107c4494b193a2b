"""Losing any one node loses nothing: an Elasticsearch node killed during ingestion and detection, the Patroni leader killed
during a stream of gated operations, a control plane killed while it leads the scheduler."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from control_plane.context import Context
from control_plane.gate import OperationRequest, iam
from tests.cluster.conftest import Cluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.services]


def _events(tag: str, start: int, n: int) -> list[dict[str, Any]]:
    """New local users on hosts of this run (the shipped new_local_user rule raises one alert per host)."""
    now = datetime.now(timezone.utc)
    return [{"@timestamp": (now - timedelta(seconds=30) + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
             "host": {"name": f"{tag}-h{i % 20}"}, "process": {"name": "useradd"}, "user": {"target": {"name": f"svc{i}"}},
             "event": {"module": "syslog", "category": ["iam"], "action": "user_created", "outcome": "success"}, "labels": {"seq": i, "tag": tag}}
            for i in range(start, start + n)]  # fmt: skip


def test_an_elasticsearch_node_killed_during_ingestion_and_detection(cluster: Cluster, cluster_rt: Context, tmp_path: Path) -> None:
    """The master dies mid-stream: every event is indexed exactly once, no alert is raised twice, detection keeps running, the node rejoins green."""
    from control_plane.soc import alerts, detect
    from control_plane.soc.ingest import Ingestor
    from control_plane.soc.rules import RULES_DIR, load_rules

    rt, tag, total, batch = cluster_rt, f"c{uuid.uuid4().hex[:6]}", 3000, 100
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "new_local_user.yml").write_text((RULES_DIR / "new_local_user.yml").read_text())
    rules = load_rules(tmp_path / "rules")
    ing = Ingestor(rt.es, tmp_path / "spool", chunk_size=batch)
    sent = threading.Event()
    failures: list[str] = []

    def ingest() -> None:
        try:
            for start in range(0, total, batch):
                ing.ingest(_events(tag, start, batch))
                if start == total // 3:
                    sent.set()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        sent.set()

    t = threading.Thread(target=ingest)
    t.start()
    sent.wait(120)
    victim = cluster.es_master()
    t0 = time.monotonic()
    cluster.kill(victim)
    victim_node = "govctl-1" if victim == "elasticsearch" else f"govctl-{victim.rsplit('-', 1)[1]}"
    wait_for(lambda: cluster.sup._es_master() not in (None, victim_node), "a new master", within=60)
    print(f"elasticsearch: new master {time.monotonic() - t0:.1f} s after the old one was killed")
    runs = []
    while t.is_alive():
        runs.append(detect.run(rt, rules, settle_s=0))
        time.sleep(0.5)
    t.join()
    assert not failures, failures
    ing.replay()  # whatever was spooled while a request was in flight to the dead node
    assert ing.pending() == 0
    rt.es.indices.refresh(index="soc-events-*")
    got = rt.es.count(index="soc-events-*", query={"term": {"labels.tag": tag}})["count"]
    assert got == total  # none lost, none twice (ids derive from the content)
    for _ in range(3):
        runs.append(detect.run(rt, rules, settle_s=0))
    assert all(not r.errors for r in runs[-3:]), runs[-1].errors
    mine = [a for a in alerts.search(rt.es, rule="new_local_user", limit=1000) if a["group_key"].startswith(f"host.name={tag}-")]
    keys = [a["group_key"] for a in mine]
    assert len(keys) == 20 and len(set(keys)) == 20  # one alert per host, none doubled
    assert sum(a["count"] for a in mine) == total
    cluster.start(victim)
    wait_for(lambda: cluster.es_health() == "green", "the cluster green again with the node back", within=180)


def test_the_patroni_leader_killed_during_gated_operations(cluster: Cluster, cluster_rt: Context) -> None:
    """Each operation completes once or fails cleanly and succeeds when retried; the audit chain verifies; the replica became the leader."""
    rt = cluster_rt
    name = f"op{uuid.uuid4().hex[:6]}"
    _, code = iam.create_user(rt, name, roles=["ops_engineer"])
    import pyotp

    totp = pyotp.parse_uri(iam.start_enrolment(rt, name, code))
    _, token, _ = iam.finish_enrolment(rt, name, code, totp.at(time.time() - 30))
    me = rt.gate.authenticate(token, source="127.0.0.1")
    old = cluster.pg_leader()
    done: list[int] = []
    retried: list[int] = []
    stop = threading.Event()
    errors: list[str] = []

    def stream() -> None:
        i = 0
        while not stop.is_set() or i < 40:
            req = OperationRequest("notify.subscription.set", name, {"kinds": ["alert"], "email": f"n{i}@city.gov.cn"}, reason=f"step {i}")
            for attempt in range(60):
                try:
                    assert rt.gate.submit(me, req).status == "succeeded"
                    done.append(i)
                    break
                except Exception as exc:  # noqa: BLE001 - the leader is gone: fail cleanly, retry
                    if attempt == 0:
                        retried.append(i)
                    if "OperationalError" not in type(exc).__name__ and "DBAPIError" not in type(exc).__name__ and "connection" not in str(exc).lower():
                        errors.append(f"{i}: {type(exc).__name__}: {exc}")
                    time.sleep(0.5)
            else:
                errors.append(f"{i}: never succeeded")
            i += 1
            if i > 400:
                break

    t = threading.Thread(target=stream)
    t.start()
    wait_for(lambda: len(done) >= 10, "ten operations before the failure")
    t0 = time.monotonic()
    cluster.kill(old)  # type: ignore[arg-type]
    wait_for(lambda: cluster.pg_leader() not in (None, old), "a new leader", within=60)
    failover = time.monotonic() - t0
    n_before = len(done)
    wait_for(lambda: len(done) >= n_before + 10, "ten more operations on the new leader", within=60)
    stop.set()
    t.join(120)
    assert not errors, errors[:5]
    assert done == sorted(set(done)), "an operation completed twice"
    assert retried, "no operation saw the failure: the kill did not hit the stream"
    succeeded = [r for r in rt.ledger.query(actor=name, operation="notify.subscription.set", outcome="succeeded", limit=10000)]
    assert len(succeeded) == len(done), (len(succeeded), len(done))  # each completed operation audited once, none recorded twice
    rep = rt.ledger.verify()
    assert rep.ok, rep.problem
    print(f"patroni failover: {failover:.1f} s to a new leader")
    cluster.start(old)  # type: ignore[arg-type]
    wait_for(cluster.pg_settled, "the old leader back as a replica", within=120)


def test_a_control_plane_killed_while_it_leads_the_scheduler(cluster: Cluster, cluster_rt: Context) -> None:
    """Two `govctl up` on one state DB: the leader dies (SIGKILL); the other leads within the poll, keeps serving, and no job slot runs twice."""
    import json
    import os
    import signal
    import subprocess

    import httpx
    from sqlalchemy import text

    from tests.console.kit import free_port
    from tests.test_cli import GOVCTL

    cfg = cluster.settings.source
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GOVCTL_CONFIG", None)
    procs: list[subprocess.Popen[str]] = []
    ports = [free_port(), free_port()]

    def scheduler(port: int) -> str | None:
        try:
            return str(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json()["checks"]["scheduler"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    try:
        for port in ports:
            procs.append(subprocess.Popen([*GOVCTL, "--config", cfg, "up", "--api-port", str(port), "--no-bastion"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env, start_new_session=True))  # fmt: skip
            wait_for(lambda p=port: scheduler(p) is not None, f"the control plane on {port} to answer", within=120)
        wait_for(lambda: sorted(filter(None, (scheduler(p) for p in ports))) == ["leader", "standby"], "one leader and one standby", within=60)
        leader = next(i for i, p in enumerate(ports) if scheduler(p) == "leader")
        other = 1 - leader
        t0 = time.monotonic()
        os.killpg(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait(30)  # reaped at once, as init reaps a dead daemon (a zombie would still look alive to the new leader)
        wait_for(lambda: scheduler(ports[other]) == "leader", "the other control plane to lead the scheduler", within=60)
        takeover = time.monotonic() - t0
        pid_other = procs[other].pid
        def runs_by_new_leader() -> int:
            with cluster_rt.engine.connect() as c:
                return int(c.execute(text("SELECT count(*) FROM job_runs WHERE pid = :p"), {"p": pid_other}).scalar() or 0)

        wait_for(runs_by_new_leader, "a job run by the new leader", within=90)
        with cluster_rt.engine.connect() as c:
            doubled = c.execute(text("SELECT job_id, slot, count(*) FROM job_runs GROUP BY job_id, slot HAVING count(*) > 1")).all()
            running_dead = c.execute(text("SELECT run_key FROM job_runs WHERE status = 'running' AND pid = :p"), {"p": procs[leader].pid}).all()
        assert not doubled, doubled
        assert not running_dead, running_dead  # the new leader marked what the dead one left half-done as failed
        print(f"scheduler takeover after the leader's death: {takeover:.1f} s")
        assert scheduler(ports[other]) == "leader"
        assert json.loads(httpx.get(f"http://127.0.0.1:{ports[other]}/healthz", timeout=5).text)["checks"]["state_db"] == "ok"
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def test_a_seaweedfs_volume_server_killed_during_a_backup(cluster: Cluster, cluster_rt: Context) -> None:
    """The backup to S3 fails cleanly or completes; after the server is back a backup completes, its copy bucket too, and check --read-data passes."""
    import os

    from dr.check import check
    from dr.service import backup_source, open_repo
    from tests.cluster.conftest import SOURCE

    rt = cluster_rt
    SOURCE.mkdir(parents=True, exist_ok=True)
    for i in range(24):  # 48 MiB that does not compress: many packs, so the kill lands mid-upload
        (SOURCE / f"f{i:02d}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = backup_source(rt, "docs")
        except Exception as exc:  # noqa: BLE001 - a clean failure is one of the two allowed outcomes
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=run)
    t.start()
    from dr.access import s3_backend

    bucket = s3_backend(rt, rt.settings.dr.bucket)
    wait_for(lambda: bucket.list("data/") or not t.is_alive(), "the first packs in the bucket", within=120)
    cluster.kill("seaweed-volume-2")
    t.join(600)
    assert not t.is_alive()
    assert ("result" in outcome) != ("error" in outcome), outcome
    cluster.start("seaweed-volume-2")
    done = backup_source(rt, "docs")
    assert done.get("snapshot") or done.get("id"), done
    repo = open_repo(rt)
    res = check(repo, read_data=True)
    assert res.ok, res
    copies = done.get("copies") or []
    assert any(c["repository"] == "s3://govctl-backup-copy" for c in copies), done
    print(f"backup while a volume server died: {'completed' if 'result' in outcome else 'failed cleanly: ' + outcome['error'][:120]}")
