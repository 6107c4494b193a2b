"""The scheduler's operations: run a job now, pause and resume it, prune old run records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from control_plane import clock
from control_plane.operation import JOB_T, TARGETS, Call, Operation, Params
from control_plane.scheduler.runner import job_runs, run_job
from control_plane.scheduler.service import set_paused
from pydantic import Field


class Prune(Params):
    keep_days: int = Field(default=30, ge=1, le=3650)


def _run(call: Call) -> dict[str, Any]:
    res = run_job(call.ctx, call.target, trigger="manual")
    if res.status == "failed":
        raise RuntimeError(f"job {call.target} failed: {res.detail}")
    return res.as_dict()


def _prune(call: Call) -> dict[str, Any]:
    cutoff = clock.iso_in(-call.params["keep_days"] * 86400)
    with call.ctx.engine.begin() as conn:
        n = conn.execute(delete(job_runs).where(job_runs.c.started < cutoff, job_runs.c.status != "running")).rowcount
    return {"deleted": n, "older_than": cutoff}


OPERATIONS = (
    Operation("jobs.run", JOB_T, TARGETS[JOB_T], _run, description="run a scheduled job now"),
    Operation("jobs.pause", JOB_T, TARGETS[JOB_T], lambda c: set_paused(c.ctx, c.target, True), description="pause a job"),
    Operation("jobs.resume", JOB_T, TARGETS[JOB_T], lambda c: set_paused(c.ctx, c.target, False), description="resume a paused job"),
    Operation("jobs.prune", r"^job_runs$", "job_runs", _prune, Prune, description="delete finished job-run records past their retention"),
)
