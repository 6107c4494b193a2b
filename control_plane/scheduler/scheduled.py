"""The scheduler's own housekeeping jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.operation import OperationRequest, system_principal
from control_plane.scheduler.registry import job

if TYPE_CHECKING:
    from control_plane.context import Context

KEEP_RUNS_DAYS = 30
SCHEDULER = system_principal("system:scheduler")


@job("scheduler.prune_runs", description="delete job-run records older than 30 days", cron="17 4 * * *")
def prune_runs(ctx: Context) -> str:
    """Delete finished job-run rows past the retention window (through the gate, as system:scheduler)."""
    view = ctx.gate.submit(SCHEDULER, OperationRequest("jobs.prune", "job_runs", {"keep_days": KEEP_RUNS_DAYS}, reason="daily housekeeping"))
    return f"deleted {view.result['deleted']} run records older than {KEEP_RUNS_DAYS} days ({view.id})"
