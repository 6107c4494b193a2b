"""Several processes appending at once keep one valid chain (processes, not threads)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from control_plane.context import Context

PROCS, EACH = 4, 60


def _worker(config: str, n: int, who: int) -> None:
    from control_plane.audit import AuditEvent
    from control_plane.config import load
    from control_plane.wiring import context_for as R

    rt = R(load(config))
    for i in range(n):
        rt.ledger.append(AuditEvent(actor=f"proc{who}", operation="concurrent.append", params={"i": i}))


def test_parallel_process_appends(runtime: Context, tmp_path: Path) -> None:
    """4 processes x 60 appends give 240 contiguous, verifiable records on SQLite and PostgreSQL."""
    import yaml

    cfg = tmp_path / "govctl.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["audit"] = {"checkpoint_every_records": 25}
    cfg.write_text(yaml.safe_dump(data))
    runtime.signer  # create the key before the workers race to
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(cfg), EACH, w)) for w in range(PROCS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rep = runtime.ledger.verify()
    assert rep.ok, rep.problem
    assert rep.records == PROCS * EACH
    recs = runtime.ledger.query(limit=1000, newest_first=False)
    assert {r.actor for r in recs} == {f"proc{w}" for w in range(PROCS)}
    assert rep.checkpoints >= 9
