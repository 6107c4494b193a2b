"""Gate overhead for a low-risk operation on SQLite: everything but the operation itself, p50/p99.

The operation is a no-op, so the time measured is authentication (token → SM3 → lookup),
authorization, risk, the SOC inline decision, the operation record, three durable audit
appends (accepted, started, finished) and the status updates. The baseline, run in the same
process, is one durable audit append: the ratio says how many "appends' worth" the gate costs.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.audit import AuditEvent  # noqa: E402
from control_plane.config import load  # noqa: E402
from control_plane.gate import OperationRequest, iam  # noqa: E402
from control_plane.gate.handlers import HANDLERS  # noqa: E402
from control_plane.gate.policy import OperationPolicy  # noqa: E402
from control_plane.wiring import context_for  # noqa: E402

N = int(os.environ.get("BENCH_GATE_OPS", "2000"))


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * len(xs))) - 1)]


def main() -> None:
    """Measure and print; end with the RESULT line."""
    tmp = Path(tempfile.mkdtemp(prefix="govctl-bench-gate-"))
    rt = context_for(load(overrides={"var_dir": str(tmp), "crypto": {"kdf_iterations": 100_000}}))
    gate = rt.gate
    ops = dict(gate.policy.operations)
    ops["bench.noop"] = OperationPolicy(roles=["ops_engineer"], risk="low")
    gate.policy = gate.policy.model_copy(update={"operations": ops})
    HANDLERS["bench.noop"] = lambda rt_, target, params: {"ok": True}
    iam.change_user(rt, "bench", roles=["ops_engineer"])
    token = iam.create_token(rt, "bench")[1]

    for i in range(100):  # warm up caches, statement compilation, the key
        gate.submit(gate.authenticate(token, source="127.0.0.1"), OperationRequest("bench.noop", "t", {"i": i}))
        rt.ledger.append(AuditEvent(actor="bench", operation="warmup"))

    gate_ms, op_ms, append_ms = [], [], []
    noop = HANDLERS["bench.noop"]
    for i in range(N):
        t0 = time.perf_counter()
        noop(rt, "t", {})
        op_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        view = gate.submit(gate.authenticate(token, source="127.0.0.1"), OperationRequest("bench.noop", "target", {"i": i}))
        gate_ms.append((time.perf_counter() - t0) * 1000 - op_ms[-1])
        assert view.status == "succeeded"
        t0 = time.perf_counter()
        rt.ledger.append(AuditEvent(actor="bench", operation="baseline", params={"i": i}))
        append_ms.append((time.perf_counter() - t0) * 1000)

    g50, g99 = statistics.median(gate_ms), pct(gate_ms, 99)
    a99 = pct(append_ms, 99)
    print(f"gate overhead  p50 {g50:.2f} ms  p99 {g99:.2f} ms  ({N} low-risk operations, SQLite, durable commits)")
    print(f"audit append   p50 {statistics.median(append_ms):.2f} ms  p99 {a99:.2f} ms (baseline)")
    print(f"RESULT gate_overhead_p50_ms={g50:.2f} gate_overhead_p99_ms={g99:.2f} audit_append_p99_ms={a99:.2f} ratio_gate_vs_append_p99={g99 / a99:.1f}")


if __name__ == "__main__":
    main()
