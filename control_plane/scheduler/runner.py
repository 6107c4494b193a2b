"""Running a job exactly once per slot.

Each run claims a row in ``job_runs`` keyed ``<job id>@<slot>`` before doing any work; a second
process (or a late duplicate fire) finds the key taken and does nothing. A failed slot may be
claimed again; a slot left ``running`` by a dead process on this host is taken over.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Float, Integer, LargeBinary, String, Table, Text, Unicode, and_, insert, or_, update
from sqlalchemy.exc import IntegrityError

from control_plane import metrics
from control_plane.clock import now_iso as utc_now_iso
from control_plane.scheduler.registry import get, latest_slot
from control_plane.db import metadata

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.scheduler")

job_runs = Table(
    "job_runs",
    metadata,
    Column("run_key", String(255), primary_key=True),
    Column("job_id", String(128), nullable=False),
    Column("slot", String(32), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("started", String(32), nullable=False),
    Column("finished", String(32)),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
)
# APScheduler's job store (JSON rows, see scheduler.service.JsonJobStore); created by migration 0008
apscheduler_jobs = Table(
    "apscheduler_jobs", metadata,
    Column("id", Unicode(191), primary_key=True), Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


@dataclass
class RunResult:
    """The outcome of one attempt to run a job."""

    job_id: str
    run_key: str
    status: str  # succeeded | failed | skipped
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def _pid_dead_here(host: str, pid: int) -> bool:
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


def claim(rt: Context, job_id: str, slot: str, trigger: str) -> str | None:
    """Claim the run key for (job, slot); return it, or None if the slot is done or running elsewhere."""
    key = f"{job_id}@{slot}"
    row = {"run_key": key, "job_id": job_id, "slot": slot, "trigger": trigger, "started": utc_now_iso(),
           "finished": None, "status": "running", "detail": "", "host": socket.gethostname(), "pid": os.getpid()}  # fmt: skip
    try:
        with rt.engine.begin() as conn:
            conn.execute(insert(job_runs).values(**row))
        return key
    except IntegrityError:
        pass
    with rt.engine.begin() as conn:
        prior = conn.execute(job_runs.select().where(job_runs.c.run_key == key)).first()
        if prior is None:
            return None
        stale = prior.status == "running" and _pid_dead_here(prior.host, prior.pid)
        if prior.status != "failed" and not stale:
            return None
        took = conn.execute(
            update(job_runs)
            .where(and_(job_runs.c.run_key == key, job_runs.c.status == prior.status, job_runs.c.pid == prior.pid,
                        or_(job_runs.c.status == "failed", job_runs.c.status == "running")))  # fmt: skip
            .values(**{k: v for k, v in row.items() if k != "run_key"})
        ).rowcount
    return key if took == 1 else None


def reap_dead_runs(rt: Context) -> list[str]:
    """Runs left 'running' by a process on this host that died (a killed control plane): marked failed, so they show and can run again."""
    with rt.engine.connect() as conn:
        rows = conn.execute(job_runs.select().where(job_runs.c.status == "running")).all()
    dead = [r.run_key for r in rows if _pid_dead_here(r.host, r.pid)]
    for key in dead:
        with rt.engine.begin() as conn:
            conn.execute(update(job_runs).where(and_(job_runs.c.run_key == key, job_runs.c.status == "running"))
                         .values(status="failed", finished=utc_now_iso(), detail="abnormal: the process running it died"))  # fmt: skip
    return dead


def _finish(rt: Context, key: str, status: str, detail: str) -> None:
    with rt.engine.begin() as conn:
        conn.execute(update(job_runs).where(job_runs.c.run_key == key)
                     .values(status=status, finished=utc_now_iso(), detail=detail[:4000]))  # fmt: skip


def run_job(rt: Context, job_id: str, *, trigger: str = "schedule", slot: str | None = None) -> RunResult:
    """Run ``job_id`` once for its slot (scheduled) or for a fresh manual slot."""
    spec = get(rt, job_id)
    if slot is None:
        if trigger == "manual":
            slot = f"manual-{datetime.now(ZoneInfo(rt.settings.scheduler.timezone)).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        else:
            now = datetime.now(ZoneInfo(rt.settings.scheduler.timezone))
            fire = latest_slot(spec.trigger(rt.settings), now)
            slot = (fire or now).isoformat(timespec="seconds")
    key = claim(rt, job_id, slot, trigger)
    if key is None:
        metrics.JOB_RUNS.labels(job=job_id, outcome="skipped").inc()
        return RunResult(job_id, f"{job_id}@{slot}", "skipped", "this slot already ran or is running elsewhere")
    t0 = time.perf_counter()
    try:
        detail = spec.func(rt) or ""
        status = "succeeded"
    except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, never lost
        status = "failed"
        detail = f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s\n%s", job_id, detail, traceback.format_exc())
    seconds = time.perf_counter() - t0
    _finish(rt, key, status, detail)
    metrics.JOB_RUNS.labels(job=job_id, outcome=status).inc()
    metrics.JOB_SECONDS.labels(job=job_id).observe(seconds)
    return RunResult(job_id, key, status, detail, round(seconds, 4))


def run_scheduled(job_id: str) -> None:
    """The textual entry APScheduler's job rows name; the store replaces it with the job bound to its context."""
    raise RuntimeError(f"job {job_id} was fired without its context; jobs are bound by JsonJobStore")
