"""The scheduler's own housekeeping jobs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete

from control_plane.scheduler.registry import job
from control_plane.scheduler.runner import job_runs

KEEP_RUNS_DAYS = 30


@job("scheduler.prune_runs", description="delete job-run records older than 30 days", cron="17 4 * * *")
def prune_runs(rt: Any) -> str:
    """Delete finished job-run rows past the retention window."""
    cutoff = (datetime.now(timezone.utc) - timedelta(days=KEEP_RUNS_DAYS)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with rt.engine.begin() as conn:
        n = conn.execute(delete(job_runs).where(job_runs.c.started < cutoff, job_runs.c.status != "running")).rowcount
    return f"deleted {n} run records older than {KEEP_RUNS_DAYS} days"
