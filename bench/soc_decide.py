"""Inline decision latency with 100 rules loaded (in-process path), p50/p99.

The shipped rules are loaded and repeated up to 100. Operations mix a harmless command line,
a destructive command hidden in a chain, a script, and plain operations without shell text.
Baseline in the same run: only parsing the same shell text with bashlex (the irreducible
first step), so the ratio shows what the analysis of the syntax tree (unwrapping, evaluating
literals and payloads, findings) and matching 100 rules add. The per-text analysis cache is
cleared before every decision: each one pays for the whole path, as a new command would.

Then the same decisions with correlation context from the real Elasticsearch (started if it is
not running): the shipped correlations over 20,000 background events, among them refusals and
SSH failures for the actors and addresses asked about. Baseline: one bare ``size: 0`` search
round trip through the same client, the least any context lookup can cost.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import helpers  # noqa: E402

from control_plane.config import load  # noqa: E402
from control_plane.es import client_for  # noqa: E402
from control_plane.services import Supervisor  # noqa: E402
from control_plane.soc.context import ContextRules  # noqa: E402
from control_plane.soc.inline import InlineEngine, OperationEvent, analyze_cached  # noqa: E402
from control_plane.soc.ingest import doc_id  # noqa: E402
from control_plane.soc.schema import ensure_templates  # noqa: E402
from control_plane.soc.rules import load_rules  # noqa: E402
import bashlex  # noqa: E402

N = int(os.environ.get("BENCH_DECISIONS", "5000"))
OPS = [
    OperationEvent("host.exec", "prim-app-1", {"command": "ls -la /var/log | grep auth; df -h"}, "ops", ("ops_engineer",), "10.1.1.1"),
    OperationEvent("host.exec", "prim-app-1", {"command": "cd /tmp && tar xzf x.tgz; rm -rf /"}, "ops", ("ops_engineer",), "10.1.1.1"),
    OperationEvent("host.exec", "back-data-1", {"script": "set -e\napt-get update\nsystemctl restart nginx\n"}, "ops", ("ops_engineer",), "10.1.1.1"),
    OperationEvent("deploy.up", "local", {}, "ops", ("ops_engineer",), "10.1.1.1"),
    OperationEvent("data.export", "traffic_stats", {"records": 500}, "ops", ("ops_engineer",), "10.1.1.1"),
]


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs))) - 1))]


def main() -> None:
    """Measure and print; end with the RESULT line."""
    rs = load_rules()
    rules = (rs.rules * (100 // len(rs.rules) + 1))[:100]
    rs.rules = rules
    engine = InlineEngine.from_rules(rs)
    for op in OPS * 50:
        engine.evaluate(op)
    dec, parse = [], []
    for i in range(N):
        op = OPS[i % len(OPS)]
        text = op.params.get("command") or op.params.get("script") or ""
        t0 = time.perf_counter()
        if text:
            bashlex.parse(text)
        parse.append((time.perf_counter() - t0) * 1000)
        analyze_cached.cache_clear()
        t0 = time.perf_counter()
        engine.evaluate(op)
        dec.append((time.perf_counter() - t0) * 1000)
    d50, d99, p99 = statistics.median(dec), pct(dec, 99), pct(parse, 99)
    print(f"inline decision, {len(engine.rules)} rules: p50 {d50:.3f} ms  p99 {d99:.3f} ms  ({N} decisions)")
    print(f"baseline, shell parsing only:   p99 {p99:.3f} ms")
    c50, c99, b99, ncorr = with_context(rs, engine)
    print(f"with ES context, {ncorr} correlations: p50 {c50:.3f} ms  p99 {c99:.3f} ms  ({N_CTX} decisions)")
    print(f"baseline, bare size:0 search:   p99 {b99:.3f} ms")
    print(f"RESULT decide_inproc_p50_ms={d50:.3f} decide_inproc_p99_ms={d99:.3f} rules={len(engine.rules)} "
          f"parse_only_p99_ms={p99:.3f} ratio_vs_parse_only_p99={d99 / max(p99, 1e-6):.1f} "
          f"decide_context_p50_ms={c50:.3f} decide_context_p99_ms={c99:.3f} bare_search_p99_ms={b99:.3f} "
          f"ratio_context_vs_bare_search_p99={c99 / max(b99, 1e-6):.2f}")  # fmt: skip


BENCH_INDEX = "soc-events-bench-context"
N_CTX = int(os.environ.get("BENCH_CONTEXT_DECISIONS", "2000"))


def with_context(rs: object, engine: InlineEngine) -> tuple[float, float, float, int]:
    """Decisions that ask Elasticsearch for correlation context, and the bare-search baseline."""
    from datetime import datetime, timedelta, timezone

    settings = load(os.environ.get("GOVCTL_CONFIG") or None)
    sup = Supervisor(settings)
    started = [s.name for s in sup.status(["elasticsearch"]) if s.health != "healthy"]
    sup.up(["elasticsearch"])
    try:
        es = client_for(settings, timeout=60)
        now = datetime.now(timezone.utc)
        evs = []
        for i in range(20000):
            t = (now - timedelta(seconds=i % 1200)).isoformat().replace("+00:00", "Z")
            if i % 2:
                evs.append({"@timestamp": t, "process": {"name": "sshd"}, "source": {"ip": f"10.1.{i % 7}.{i % 200 + 1}"}, "user": {"name": "root"},
                            "event": {"module": "syslog", "category": ["authentication"], "action": "ssh_login", "outcome": "failure"}})  # fmt: skip
            else:
                evs.append({"@timestamp": t, "user": {"name": f"ops{i % 50}"}, "govctl": {"operation": "deploy.up", "decision": "deny" if i % 3 else "allow"},
                            "event": {"module": "govctl", "dataset": "govctl.audit", "action": "deploy.up"}})  # fmt: skip
        # an index of its own (the event template applies), deleted afterwards: no fake refusals left in today's events
        ensure_templates(es)
        helpers.bulk(es, ({"_index": BENCH_INDEX, "_id": doc_id(e), "_source": e} for e in evs), chunk_size=2000, refresh="wait_for")
        fast = es.options(request_timeout=2, max_retries=0)
        engine.context = ContextRules(rs.correlations, lambda: fast, index=BENCH_INDEX)  # type: ignore[attr-defined]
        ops = [OperationEvent(o.operation, o.target, o.params, f"ops{i}", o.roles, f"10.1.{i % 7}.{i + 1}") for i, o in enumerate(OPS)]
        for op in ops * 40:
            engine.evaluate(op)
        dec, bare = [], []
        for i in range(N_CTX):
            t0 = time.perf_counter()
            fast.search(index=BENCH_INDEX, size=0, track_total_hits=False, request_cache=False)
            bare.append((time.perf_counter() - t0) * 1000)
            analyze_cached.cache_clear()
            t0 = time.perf_counter()
            d = engine.evaluate(ops[i % len(ops)])
            dec.append((time.perf_counter() - t0) * 1000)
            assert not d.degraded, d
        return statistics.median(dec), pct(dec, 99), pct(bare, 99), len(engine.context.rules)
    finally:
        es.indices.delete(index=BENCH_INDEX, ignore_unavailable=True)
        if started:
            sup.down(started)


if __name__ == "__main__":
    main()
