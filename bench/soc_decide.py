"""Inline decision latency with 100 rules loaded (in-process path), p50/p99.

The shipped rules are loaded and repeated up to 100. Operations mix a harmless command line,
a destructive command hidden in a chain, a script, and plain operations without shell text.
Baseline in the same run: only parsing the same shell text with bashlex (the irreducible
first step), so the ratio shows what matching 100 rules adds. Decisions needing Elasticsearch
context (correlations) are not built yet; this measures the in-process path only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.soc.inline import InlineEngine, OperationEvent  # noqa: E402
from control_plane.soc.rules import load_rules  # noqa: E402
from control_plane.soc.shell import commands  # noqa: E402

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
        commands(text)
        parse.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        engine.evaluate(op)
        dec.append((time.perf_counter() - t0) * 1000)
    d50, d99, p99 = statistics.median(dec), pct(dec, 99), pct(parse, 99)
    print(f"inline decision, {len(engine.rules)} rules: p50 {d50:.3f} ms  p99 {d99:.3f} ms  ({N} decisions)")
    print(f"baseline, shell parsing only:   p99 {p99:.3f} ms")
    print(f"RESULT decide_inproc_p50_ms={d50:.3f} decide_inproc_p99_ms={d99:.3f} rules={len(engine.rules)} "
          f"parse_only_p99_ms={p99:.3f} ratio_vs_parse_only_p99={d99 / max(p99, 1e-6):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
