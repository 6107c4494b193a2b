"""The scheduler's commands: list, run, pause, resume, runs."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from control_plane.clikit import (JsonOpt, changes, context, emit_json, gated, out, pending_note, reads)  # fmt: skip

jobs_app = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)

@jobs_app.command("list")
@reads("jobs.read")
def jobs_list(as_json: bool = JsonOpt) -> None:
    """Jobs with cadence, next run (Asia/Shanghai by default), pause state and last outcome."""
    from control_plane.scheduler import list_jobs
    from control_plane.scheduler.leader import LeaderLock

    rt = context()
    rows = list_jobs(rt)
    holder = LeaderLock(rt.engine, rt.settings.var / "run" / "scheduler.leader").holder()
    if as_json:
        emit_json({"leader": holder, "jobs": rows})
        return
    t = Table("id", "cadence", "next run", "paused", "last run", "last status")
    for r in rows:
        t.add_row(r["id"], r["cadence"], r["next_run"] or "-", "yes" if r["paused"] else "no",
                  r["last_run"] or "-", r["last_status"] or "-")  # fmt: skip
    out.print(t)
    out.print(f"leader: {'pid ' + str(holder.get('pid')) + ' on ' + str(holder.get('host')) if holder else 'none running (start one with `govctl up`)'}")


@jobs_app.command("run")
@changes("jobs.run")
def jobs_run(job_id: str, as_json: bool = JsonOpt) -> None:
    """Run a job now, in this process, with its own run key."""
    from control_plane.scheduler.registry import get

    get(context(), job_id)
    view = gated("jobs.run", job_id)
    if as_json:
        emit_json(view.result if view.result is not None else view.as_dict())
    elif not pending_note(view):
        r = view.result
        out.print(f"{r['job_id']}: {r['status']} in {r['seconds']}s — {r['detail']}")


@jobs_app.command("pause")
@changes("jobs.pause")
def jobs_pause(job_id: str, reason: str = typer.Option("", help="Why (recorded)."), as_json: bool = JsonOpt) -> None:
    """Pause a job (kept across restarts). High risk: needs an approval."""
    _pause(job_id, True, as_json, reason)


@jobs_app.command("resume")
@changes("jobs.resume")
def jobs_resume(job_id: str, as_json: bool = JsonOpt) -> None:
    """Resume a paused job."""
    _pause(job_id, False, as_json, "")


def _pause(job_id: str, paused: bool, as_json: bool, reason: str) -> None:
    from control_plane.scheduler.registry import get

    get(context(), job_id)
    view = gated("jobs.pause" if paused else "jobs.resume", job_id, reason=reason)
    if as_json:
        emit_json(view.as_dict())
    elif not pending_note(view):
        res = view.result
        out.print(f"{job_id}: {'paused' if res['paused'] else 'resumed, next run ' + str(res['next_run'])}")


@jobs_app.command("runs")
@reads("jobs.read")
def jobs_runs(job_id: Optional[str] = typer.Argument(None), limit: int = 20, as_json: bool = JsonOpt) -> None:
    """The newest job runs and their outcome."""
    from control_plane.scheduler import recent_runs

    rows = recent_runs(context(), job_id, limit)
    if as_json:
        emit_json(rows)
        return
    t = Table("run key", "trigger", "started", "finished", "status", "detail")
    for r in rows:
        t.add_row(r["run_key"], r["trigger"], r["started"], r["finished"] or "-", r["status"], (r["detail"] or "")[:80])
    out.print(t)


APPS = (("jobs", jobs_app),)
