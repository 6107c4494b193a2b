"""The cluster profile against the single one: ingestion on 3 Elasticsearch nodes vs 1, failover times, gate throughput on Patroni vs one PostgreSQL.

Starts its own services on ports of its own under a throw-away directory: a single node and a
single PostgreSQL (the baseline), then three Elasticsearch nodes and two Patroni members on etcd.
Measures, in the same run:
- events/s through our ingestion path (`Ingestor`, bulk, one replica on the cluster) on 3 nodes vs 1;
- Elasticsearch: the master SIGKILLed, time until another node is master (BENCH_CLUSTER_KILLS times,
  the node started again and the cluster green between kills);
- Patroni: the leader (Patroni and its PostgreSQL) SIGKILLed, time until a write succeeds again;
- low-risk gated operations per second with the state DB on the Patroni members (synchronous
  replication) vs on the single PostgreSQL;
- SeaweedFS: a volume server SIGKILLed and started again, time until a write-once object lands
  again (replication 001 refuses writes it cannot replicate: this is recovery, not failover);
- audit verification reading BENCH_CLUSTER_CHECKPOINTS checkpoints back from the S3 bucket vs
  from the anchor file (the same ledger);
- control planes: two `govctl up` on the cluster, the scheduler's leader SIGKILLed, time until
  the other leads (started again between kills).
Ends with one RESULT line. Everything it started is stopped; its directory is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.config import load  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402

KILLS = int(os.environ.get("BENCH_CLUSTER_KILLS", "5"))
EVENTS = int(os.environ.get("BENCH_CLUSTER_EVENTS", "40000"))
GATE_S = float(os.environ.get("BENCH_CLUSTER_GATE_S", "10"))
CHECKPOINTS = int(os.environ.get("BENCH_CLUSTER_CHECKPOINTS", "1000"))
OFF = {"prometheus": {"enabled": False}, "node_exporter": {"enabled": False}, "alertmanager": {"enabled": False}}


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def wait(pred: Any, what: str, within: float = 300) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            got = pred()
        except Exception:  # noqa: BLE001 - not yet
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise SystemExit(f"not within {within}s: {what}")


def settings(root: Path, name: str, services: dict[str, Any], **extra: Any) -> Any:
    cfg = root / name / "govctl.yaml"
    cfg.parent.mkdir(parents=True)
    data = {"var_dir": str(root / name / "var"), "crypto": {"kdf_iterations": 100_000, "passphrase_file": str(root / name / "passphrase")},
            "services": {**OFF, **services}, "soc": {"stream_poll_s": 0}, "dr": {"sources": {}}, "scheduler": {"enabled": False}, **extra}  # fmt: skip
    cfg.write_text(yaml.safe_dump(data))
    return load(cfg)


def events(tag: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return [{"@timestamp": now, "host": {"name": f"{tag}-{i % 50}"}, "process": {"name": "sshd"}, "message": f"Accepted publickey for ops from 10.0.{i % 200}.{i % 250}",
             "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "success"}, "user": {"name": "ops"},
             "source": {"ip": f"10.0.{i % 200}.{i % 250}"}, "labels": {"seq": i}} for i in range(n)]  # fmt: skip


def ingest_rate(rt: Any, tmp: Path) -> float:
    from control_plane.soc.ingest import Ingestor

    ing = Ingestor(rt.es, tmp / f"spool-{uuid.uuid4().hex[:6]}")
    ing.ingest(events("warm", 500))
    evs = events(f"b{uuid.uuid4().hex[:6]}", EVENTS)
    t0 = time.perf_counter()
    for i in range(0, len(evs), 2000):
        ing.ingest(evs[i:i + 2000])
    return EVENTS / (time.perf_counter() - t0)


def gate_rate(rt: Any) -> float:
    import pyotp

    from control_plane.gate import OperationRequest, iam

    name = f"b{uuid.uuid4().hex[:6]}"
    _, code = iam.create_user(rt, name, roles=["ops_engineer"])
    totp = pyotp.parse_uri(iam.start_enrolment(rt, name, code))
    _, token, _ = iam.finish_enrolment(rt, name, code, totp.at(time.time() - 30))
    me = rt.gate.authenticate(token, source="127.0.0.1")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < GATE_S:
        rt.gate.submit(me, OperationRequest("notify.subscription.set", name, {"kinds": ["alert"], "email": f"x{n}@city.gov.cn"}))
        n += 1
    return n / (time.perf_counter() - t0)


def s3_recovery(sup: Supervisor, rt: Any) -> list[float]:
    """A volume server killed and started again: seconds until a write-once object lands again."""
    from control_plane.services.supervisor import _port_free

    st = rt.object_store("govctl-audit", attempts=1, timeout_s=5)
    out = []
    for _ in range(KILLS):
        st.write_once(f"bench/{uuid.uuid4().hex}", os.urandom(4096))  # writes work before the kill
        t0 = time.monotonic()
        kill(sup, "seaweed-volume-2")
        wait(lambda: _port_free("127.0.0.1", sup._default_port("seaweed-volume-2")), "the volume port free", 60)
        sup.up(["seaweed-volume-2"])

        def lands() -> bool:
            st.write_once(f"bench/{uuid.uuid4().hex}", os.urandom(4096))
            return True

        wait(lands, "a write after the volume server's restart", 300)
        out.append(time.monotonic() - t0)
    return out


def anchor_reads(rt: Any, root: Path) -> tuple[float, float]:
    """Seconds to verify a ledger of CHECKPOINTS checkpoints reading them from S3 vs from its anchor file."""
    from control_plane.audit import AuditEvent, Ledger
    from control_plane.crypto import SM2PrivateKey
    from control_plane.db import make_engine, upgrade

    eng = make_engine(f"sqlite:///{root / 'anchors.db'}")
    upgrade(eng)
    st = rt.object_store("govctl-audit")
    st.prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    key = SM2PrivateKey.generate()
    writer = Ledger(eng, key, anchor_file=root / "anchors.jsonl", checkpoint_every=1, stores=lambda: [st])
    for i in range(CHECKPOINTS):
        writer.append(AuditEvent(actor="bench", operation="op", params={"i": i}))
    by_file = Ledger(eng, key, anchor_file=root / "anchors.jsonl")
    by_s3 = Ledger(eng, key, stores=lambda: [st])
    by_file.verify()  # warm the page cache and the connection pool alike
    t0 = time.perf_counter()
    rf = by_file.verify()
    tf = time.perf_counter() - t0
    t0 = time.perf_counter()
    rs = by_s3.verify()
    ts = time.perf_counter() - t0
    assert rf.ok and rs.ok and rf.anchors == rs.anchors == CHECKPOINTS, (rf, rs)
    return tf, ts


def takeovers(cfg: Path) -> list[float]:
    """Two control planes; the scheduler's leader SIGKILLed KILLS times: seconds until the other leads."""
    import subprocess

    import httpx

    def role(port: int) -> str | None:
        try:
            return str(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json()["checks"]["scheduler"])
        except Exception:  # noqa: BLE001 - not answering
            return None

    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GOVCTL_CONFIG", None)
    govctl = [sys.executable, "-c", "from control_plane.cli import main; main()", "--config", str(cfg)]
    ports = [38700, 38701]
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(port: int) -> None:
        procs[port] = subprocess.Popen([*govctl, "up", "--api-port", str(port), "--no-bastion"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env=env, start_new_session=True)  # fmt: skip
        wait(lambda: role(port), f"the control plane on {port}", 180)

    out = []
    try:
        for p in ports:
            start(p)
        for _ in range(KILLS):
            wait(lambda: sorted(filter(None, map(role, ports))) == ["leader", "standby"], "a leader and a standby", 120)
            leader = next(p for p in ports if role(p) == "leader")
            other = ports[1 - ports.index(leader)]
            t0 = time.monotonic()
            os.killpg(procs[leader].pid, signal.SIGKILL)
            procs[leader].wait(30)
            wait(lambda: role(other) == "leader", "the other control plane leading", 120)
            out.append(time.monotonic() - t0)
            start(leader)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
    return out


def kill(sup: Supervisor, name: str) -> None:
    pid, _ = sup._owned_pid(name)
    pm = None
    if name.startswith("postgres"):
        i = 1 if name == "postgres" else int(name.rsplit("-", 1)[1])
        f = sup.root / "postgres-ha" / f"member-{i}" / "data" / "postmaster.pid"
        pm = int(f.read_text().split()[0]) if f.exists() else None
    os.killpg(pid, signal.SIGKILL)  # type: ignore[arg-type]
    if pm:
        try:
            os.kill(pm, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait(lambda: (os.waitpid(pid, os.WNOHANG) or True) and not Path(f"/proc/{pid}").exists(), f"{name} gone", 30)  # type: ignore[arg-type]


def main() -> None:
    """Baseline, cluster, kills; the RESULT line."""
    import httpx
    from sqlalchemy import create_engine, text

    from control_plane.services.supervisor import _port_free

    root = Path(tempfile.mkdtemp(prefix="govctl-bench-cluster-"))
    os.chmod(root, 0o755)
    single = settings(root, "single", {"elasticsearch": {"port": 39400}, "postgres": {"port": 35532}})
    cluster = settings(root, "cluster", {"elasticsearch": {"port": 39200, "nodes": 3, "heap_min_mb": 256, "heap_max_mb": 512},
                                         "postgres": {"port": 35432, "ha": {"members": 2, "rest_port": 38008, "etcd_port": 32379}},
                                         "objectstore": {"port": 38333, "master_port": 39333, "filer_port": 38888, "volume_ports": [38080, 38081]}},
                       profile="cluster", scheduler={"enabled": True, "leader_poll_s": 5}, api={"port": 38700},
                       bastion={"enabled": False})  # fmt: skip
    s_sup, c_sup = Supervisor(single), Supervisor(cluster)
    try:
        s_sup.up()
        c_sup.up()
        s_rt = context_for(load(single.source, overrides={"state": {"url": s_sup.postgres_url()}}))
        c_rt = context_for(cluster)
        wait(lambda: c_rt.es.cluster.health()["status"] == "green", "the cluster green")
        one, three = ingest_rate(s_rt, root), ingest_rate(c_rt, root)
        print(f"ingestion: 1 node {one:,.0f} events/s, 3 nodes (one replica) {three:,.0f} events/s, ratio {three / one:.2f}")
        g1, g2 = gate_rate(s_rt), gate_rate(c_rt)
        print(f"gated operations: single PostgreSQL {g1:.1f}/s, Patroni (synchronous replica) {g2:.1f}/s, ratio {g2 / g1:.2f}")
        es_t: list[float] = []
        for _ in range(KILLS):
            master = c_sup._es_master()
            name = "elasticsearch" if master == "govctl-1" else f"elasticsearch-{master.rsplit('-', 1)[1]}"  # type: ignore[union-attr]
            t0 = time.monotonic()
            kill(c_sup, name)
            wait(lambda: c_sup._es_master() not in (None, master), "a new master", 120)
            es_t.append(time.monotonic() - t0)
            wait(lambda n=c_sup._default_port(name): _port_free("127.0.0.1", n), "the port free", 60)
            c_sup.up([name])
            wait(lambda: c_rt.es.cluster.health()["status"] == "green", "green again", 300)
        print(f"elasticsearch master killed → new master: p50 {statistics.median(es_t):.1f} s, p99 {pct(es_t, 99):.1f} s ({KILLS} kills)")
        eng = create_engine(cluster.state_url(), pool_pre_ping=True)
        pg_t: list[float] = []
        for _ in range(KILLS):
            # with synchronous replication only the synchronous standby may be promoted: wait until the restarted member is one again
            wait(lambda: any(m["role"] == "sync_standby" for m in httpx.get("http://127.0.0.1:38009/cluster", timeout=2).json()["members"])
                 or any(m["role"] == "sync_standby" for m in httpx.get("http://127.0.0.1:38008/cluster", timeout=2).json()["members"]),
                 "a synchronous standby", 300)  # fmt: skip
            members = wait(lambda: next(httpx.get(f"http://127.0.0.1:{p}/cluster", timeout=2).json()["members"] for p in (38008, 38009)), "members")
            leader = next(m["name"] for m in members if m["role"] == "leader")
            name = "postgres" if leader == "pg-1" else f"postgres-{leader.rsplit('-', 1)[1]}"
            t0 = time.monotonic()
            kill(c_sup, name)

            def writes() -> bool:
                with eng.begin() as c:
                    c.execute(text("SELECT 1"))
                    c.execute(text("CREATE TABLE IF NOT EXISTS bench_failover (x int)"))
                    c.execute(text("INSERT INTO bench_failover VALUES (1)"))
                return True

            wait(writes, "writes on the new leader", 300)
            pg_t.append(time.monotonic() - t0)
            wait(lambda n=c_sup._default_port(name): _port_free("127.0.0.1", n), "the port free", 60)
            c_sup.up([name])
        print(f"patroni leader killed → writes again: p50 {statistics.median(pg_t):.1f} s, p99 {pct(pg_t, 99):.1f} s ({KILLS} kills)")
        s3_t = s3_recovery(c_sup, c_rt)
        print(f"seaweedfs volume server killed and restarted → writes again: p50 {statistics.median(s3_t):.1f} s, p99 {pct(s3_t, 99):.1f} s ({KILLS} kills)")
        tf, ts = anchor_reads(c_rt, root)
        print(f"audit verify with {CHECKPOINTS} checkpoints: anchors from the file {tf:.2f} s, from S3 {ts:.2f} s, ratio {ts / tf:.2f}")
        cp_t = takeovers(Path(cluster.source))
        print(f"control plane leading the scheduler killed → the other leads: p50 {statistics.median(cp_t):.1f} s, p99 {pct(cp_t, 99):.1f} s ({KILLS} kills)")
        print(f"RESULT ingest_1_node_eps={one:.0f} ingest_3_nodes_eps={three:.0f} ingest_ratio={three / one:.2f} gate_single_ops_s={g1:.1f} "
              f"gate_patroni_ops_s={g2:.1f} gate_ratio={g2 / g1:.2f} es_failover_p50_s={statistics.median(es_t):.1f} es_failover_p99_s={pct(es_t, 99):.1f} "
              f"pg_failover_p50_s={statistics.median(pg_t):.1f} pg_failover_p99_s={pct(pg_t, 99):.1f} "
              f"s3_recovery_p50_s={statistics.median(s3_t):.1f} s3_recovery_p99_s={pct(s3_t, 99):.1f} "
              f"verify_file_s={tf:.2f} verify_s3_s={ts:.2f} verify_s3_ratio={ts / tf:.2f} checkpoints={CHECKPOINTS} "
              f"takeover_p50_s={statistics.median(cp_t):.1f} takeover_p99_s={pct(cp_t, 99):.1f} kills={KILLS}")  # fmt: skip
    finally:
        for sup in (c_sup, s_sup):
            try:
                sup.down()
            except Exception as exc:  # noqa: BLE001 - stop the rest
                print(f"stopping: {exc}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
