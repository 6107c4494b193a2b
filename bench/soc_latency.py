"""Event indexed → alert visible, through the streaming detection path, p50/p99.

Elasticsearch is started if it is not running. A runtime on a throw-away state DB runs the
streaming detector (the shipped rules, default poll) in its thread, as the scheduler leader does.
Each sample indexes one event matching a shipped rule through our ingestion path and then
watches ``soc-alerts`` until an alert lists that event.

Baseline in the same run: the same kind of event indexed and watched for in the events index
itself, i.e. how long Elasticsearch takes to make a document searchable (its refresh), which no
detector that searches can beat. The reference products' default schedule is 5 minutes.
Everything the benchmark wrote (events and alerts) is deleted afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import yaml
from elasticsearch import helpers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.config import load  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.soc.ingest import Ingestor, doc_id  # noqa: E402
from control_plane.soc.rules import load_rules  # noqa: E402
from control_plane.soc.schema import ALERTS_INDEX, EVENTS_PREFIX  # noqa: E402
from control_plane.soc.stream import StreamDetector  # noqa: E402

N = int(os.environ.get("BENCH_LATENCY_EVENTS", "150"))
TAG = f"bench-latency-{uuid.uuid4().hex[:6]}"


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def event(i: int) -> dict:
    """A new local user on a bench host (matches the shipped new_local_user rule)."""
    return {"@timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "host": {"name": f"{TAG}-{i}"}, "process": {"name": "useradd"}, "user": {"target": {"name": f"svc{i}"}},
            "event": {"module": "syslog", "category": ["iam"], "action": "user_created", "outcome": "success"}}  # fmt: skip


def wait_for(es: object, index: str, query: dict, limit_s: float = 30.0) -> float:
    """Seconds until ``query`` finds a document in ``index`` (polled every 10 ms)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if es.search(index=index, size=1, query=query, ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]:  # type: ignore[attr-defined]
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise SystemExit(f"nothing found in {index} after {limit_s} s for {query}")


def main() -> None:
    """Measure and print; end with the RESULT line."""
    base = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(base)
    started = [s.name for s in sup.status(["elasticsearch"]) if s.health != "healthy"]
    sup.up(["elasticsearch"])
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-"))
    cfg = tmp / "govctl.yaml"
    cfg.write_text(yaml.safe_dump({"var_dir": str(tmp / "var"), "services": {"elasticsearch": {"port": base.services.elasticsearch.port}}}))
    rt = context_for(load(cfg))
    es = rt.es
    ing = Ingestor(es, tmp / "spool")
    sd = StreamDetector(rt, load_rules(), poll_s=rt.settings.soc.stream_poll_s)
    ours: list[float] = []
    refresh: list[float] = []
    try:
        ing.ingest([event(-1)])  # templates, index, first alert: not measured
        sd.start()
        time.sleep(2)
        for i in range(N):
            time.sleep(random.uniform(0.05, 0.3))  # no phase lock with the poll
            ev = event(i)
            ing.ingest([ev])
            ours.append(wait_for(es, ALERTS_INDEX, {"term": {"event_ids": doc_id(ev)}}))
            time.sleep(random.uniform(0.05, 0.3))
            ev2 = event(N + i)
            ev2["event"]["action"] = "user_seen"  # matches no rule
            ing.ingest([ev2])
            refresh.append(wait_for(es, f"{EVENTS_PREFIX}*", {"ids": {"values": [doc_id(ev2)]}}))
        assert sd.last_error is None, sd.last_error
    finally:
        sd.stop()
        # this node has no _delete_by_query (no reindex module): find the documents, then bulk-delete them by id
        es.indices.refresh(index=f"{EVENTS_PREFIX}*,{ALERTS_INDEX}", ignore_unavailable=True, allow_no_indices=True)
        for idx, q in ((f"{EVENTS_PREFIX}*", {"prefix": {"host.name": TAG}}), (ALERTS_INDEX, {"prefix": {"group_key": f"host.name={TAG}"}})):
            hits = es.search(index=idx, size=10_000, query=q, source=False, ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]
            helpers.bulk(es, ({"_op_type": "delete", "_index": h["_index"], "_id": h["_id"]} for h in hits), raise_on_error=False)
        if started:
            sup.down(started)
    o50, o99, r50, r99 = statistics.median(ours), pct(ours, 99), statistics.median(refresh), pct(refresh, 99)
    print(f"indexed → alert visible (streaming path, poll {sd.poll_s} s): p50 {o50 * 1000:.0f} ms  p99 {o99 * 1000:.0f} ms  ({N} events)")
    print(f"baseline, indexed → searchable (ES refresh):            p50 {r50 * 1000:.0f} ms  p99 {r99 * 1000:.0f} ms")
    print(f"RESULT alert_latency_p50_ms={o50 * 1000:.0f} alert_latency_p99_ms={o99 * 1000:.0f} searchable_p50_ms={r50 * 1000:.0f} "
          f"searchable_p99_ms={r99 * 1000:.0f} ratio_p99_vs_searchable={o99 / max(r99, 1e-6):.2f} events={N}")  # fmt: skip


if __name__ == "__main__":
    main()
