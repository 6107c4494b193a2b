"""Console server time per page with 10,000 alerts and 1,000,000 audit records, as ratios to the equivalent bare API call.

A throw-away runtime (SQLite state DB) on the running Elasticsearch (started if it is not):
10,000 alerts are bulk-indexed into ``soc-alerts`` with a tag of this run, and 1,000,000 audit
records are written straight into the throw-away state DB (rows shaped like the ledger's; their
hash chain is not computed — no page verifies it, and the ledger's own benchmark measures
appends). Each page is requested in process (ASGI, no network) as a signed-in person, N times;
its baseline is the API route that returns the same data (or, for the overview, ``/healthz``;
for the event search, the same Elasticsearch query made directly). Goals: p95 ≤ 200 ms per
page, overview ≤ 1 s. Everything written to Elasticsearch is deleted afterwards.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyotp
import yaml
from elasticsearch import helpers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.config import load  # noqa: E402
from control_plane.gate import iam  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402

N = int(os.environ.get("BENCH_CONSOLE_REQUESTS", "40"))
ALERTS = int(os.environ.get("BENCH_CONSOLE_ALERTS", "10000"))
RECORDS = int(os.environ.get("BENCH_CONSOLE_RECORDS", "1000000"))
TAG = f"bench-console-{uuid.uuid4().hex[:6]}"


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def seed_alerts(es: object) -> None:
    from control_plane.soc.alerts import ALERTS_INDEX, ensure_index, grade

    ensure_index(es)
    now = datetime.now(timezone.utc)
    sev = ["critical", "high", "medium", "low"]

    def docs():  # noqa: ANN202
        for i in range(ALERTS):
            s = sev[i % 4]
            t = (now - timedelta(seconds=i * 7)).isoformat()
            yield {"_index": ALERTS_INDEX, "_id": f"{TAG}-{i}", "_source": {
                "@timestamp": t, "first_seen": t, "last_seen": t, "kind": "detection", "count": 1 + i % 5, "status": ["open", "acknowledged", "closed"][i % 3],
                "rule": {"id": f"{TAG}-rule-{i % 40}", "name": f"rule{i % 40}", "title": f"规则 {i % 40}"}, "severity": s, "grade": grade(s),
                "group_key": f"host.name={TAG}-{i % 300}|source.ip=10.0.{i % 200}.{i % 250}", "summary": f"bench alert {i}",
                "history": [{"ts": t, "actor": "soc-engine", "action": "raised"}], "events": [], "event_ids": []}}  # fmt: skip

    helpers.bulk(es, docs(), chunk_size=2000, refresh="wait_for")


def seed_records(db: Path) -> None:
    con = sqlite3.connect(db)
    start = con.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_records").fetchone()[0]
    base = datetime.now(timezone.utc) - timedelta(days=90)
    ops = ["deploy.preview", "playbook.run", "soc.alert.update", "bastion.command", "ops.approve", "report.build", "gate.authenticate"]
    actors = [f"user{i}" for i in range(200)]
    batch = []
    for i in range(1, RECORDS + 1):
        ts = (base + timedelta(seconds=i * 7.7)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        batch.append((start + i, ts, actors[i % 200], "ops_engineer", "10.0.0.1", ops[i % 7], f"host-{i % 500}", "0" * 64, "allow",
                      "succeeded" if i % 11 else "refused", "", "{}", "0" * 64, f"{i:064x}"))  # fmt: skip
        if len(batch) == 50000:
            con.executemany("INSERT INTO audit_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
            batch.clear()
    if batch:
        con.executemany("INSERT INTO audit_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    con.commit()
    con.close()


def timed(client: object, url: str, n: int, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, **kw)  # type: ignore[attr-defined]
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return out


def main() -> None:
    """Seed, measure each page against its baseline, clean up; end with the RESULT line."""
    from fastapi.testclient import TestClient

    from control_plane.api.app import create_app
    from control_plane.soc.alerts import ALERTS_INDEX

    base = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(base)
    started = [s.name for s in sup.status(["elasticsearch"]) if s.health != "healthy"]
    sup.up(["elasticsearch"])
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-"))
    cfg = tmp / "govctl.yaml"
    cfg.write_text(yaml.safe_dump({"var_dir": str(tmp / "var"), "crypto": {"kdf_iterations": 100_000},
                                   "services": {"elasticsearch": {"port": base.services.elasticsearch.port, "credentials": str(base.es_credentials_path()),
                                                                  "ca_cert": str(base.es_ca_path())}}}))  # fmt: skip
    rt = context_for(load(cfg))
    es = rt.es
    try:
        t0 = time.perf_counter()
        seed_alerts(es)
        t1 = time.perf_counter()
        rt.ledger.head()  # migrations ran: the table exists
        seed_records(Path(rt.settings.state_url().split("sqlite:///", 1)[1]))
        t2 = time.perf_counter()
        print(f"seeded {ALERTS:,} alerts in {t1 - t0:.1f} s and {RECORDS:,} audit records in {t2 - t1:.1f} s")
        _, code = iam.create_user(rt, "benchsec", roles=["sysadmin"])  # sysadmin reads every panel of the overview
        totp = pyotp.parse_uri(iam.start_enrolment(rt, "benchsec", code))
        _, token, _ = iam.finish_enrolment(rt, "benchsec", code, totp.at(time.time() - 30))
        iam.set_password(rt, "benchsec", "Bench-console-2026")
        c = TestClient(create_app(rt), base_url="http://127.0.0.1", client=("127.0.0.1", 40000))
        r = c.post("/login", data={"username": "benchsec", "password": "Bench-console-2026", "otp": totp.now()}, follow_redirects=False)
        assert r.status_code == 303, r.text[:500]
        api = {"headers": {"Authorization": f"Bearer {token}"}}
        actor = f"user{random.randrange(200)}"
        pairs = [  # (name, page, baseline, baseline kwargs)
            ("alerts", "/alerts", "/api/v1/soc/alerts?limit=200", api),
            ("alerts_grouped", "/alerts?group=rule", "/api/v1/soc/alerts?limit=200", api),
            ("alerts_critical", "/alerts?severity=critical", "/api/v1/soc/alerts?severity=critical&limit=200", api),
            ("audit", "/audit", "/api/v1/audit?limit=100", api),
            ("audit_actor", f"/audit?actor={actor}", f"/api/v1/audit?actor={actor}&limit=100", api),
            ("approvals", "/approvals", "/api/v1/ops?limit=500", api),
            ("sessions", "/sessions", "/api/v1/bastion/sessions?all=true", api),
            ("overview", "/", "/healthz", {}),
        ]
        # the alert page for one alert
        pairs.append(("alert", f"/alerts/{TAG}-7", "/api/v1/soc/alerts?limit=1", api))
        results = {}
        for name, page, bare, kw in pairs:
            timed(c, page, 2)
            timed(c, bare, 2, **kw)  # warm
            pt, bt = [], []
            for _ in range(N):  # interleaved, so a noisy moment hits both
                pt += timed(c, page, 1)
                bt += timed(c, bare, 1, **kw)
            results[name] = (pct(pt, 95), pct(bt, 95))
            print(f"{name:16s} page p95 {pct(pt, 95) * 1000:7.1f} ms   bare p95 {pct(bt, 95) * 1000:7.1f} ms   ratio {pct(pt, 95) / max(pct(bt, 95), 1e-6):5.2f}")
        worst = max(v[0] for k, v in results.items() if k != "overview")
        print(f"RESULT alerts={ALERTS} audit_records={RECORDS} page_p95_worst_ms={worst * 1000:.1f} overview_p95_ms={results['overview'][0] * 1000:.1f} "
              + " ".join(f"{k}_p95_ms={v[0] * 1000:.1f} {k}_ratio={v[0] / max(v[1], 1e-6):.2f}" for k, v in results.items()))  # fmt: skip
    finally:
        es.indices.refresh(index=ALERTS_INDEX, ignore_unavailable=True)
        hits = es.search(index=ALERTS_INDEX, size=10_000, query={"prefix": {"rule.id": TAG}}, source=False, ignore_unavailable=True)["hits"]["hits"]
        while hits:
            helpers.bulk(es, ({"_op_type": "delete", "_index": h["_index"], "_id": h["_id"]} for h in hits), raise_on_error=False, refresh="wait_for")
            hits = es.search(index=ALERTS_INDEX, size=10_000, query={"prefix": {"rule.id": TAG}}, source=False, ignore_unavailable=True)["hits"]["hits"]
        if started:
            sup.down(started)


if __name__ == "__main__":
    main()
