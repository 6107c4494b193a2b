"""Scheduled jobs are declared beside their domain (``<domain>/scheduled.py``); the composition root collects them.

A declaration has a stable id, a cadence (an interval or a cron expression, in the scheduler's
time zone) and a function taking the context. A job that changes the world submits its operation
to the gate as ``system:scheduler``; the policy says which of those run without an approver.
Background workers (the SOC's streaming detector, WAL shipping) are declared the same way and
run while this process is the scheduler's leader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.context import Context

# Interval slots are counted from a fixed origin so every process computes the same slots.
ORIGIN = datetime(2020, 1, 1)


class SchedulerError(GovctlError):
    """Root of the scheduler's errors."""

    http_status = 404
    exit_code = 2


@dataclass(frozen=True)
class JobSpec:
    """One declared job."""

    id: str
    func: Callable[[Any], str | None]
    description: str
    every_s: float | Callable[[Any], float] | None = None
    cron: str | Callable[[Any], str] | None = None
    misfire_grace_s: float | Callable[[Any], float] | None = None  # None: the scheduler's default

    def cron_of(self, settings: Any) -> str | None:
        """The cron expression (a configured one is read from the settings)."""
        return self.cron(settings) if callable(self.cron) else self.cron

    def grace(self, settings: Any) -> float | None:
        """How late a missed run may still start."""
        return self.misfire_grace_s(settings) if callable(self.misfire_grace_s) else self.misfire_grace_s

    def trigger(self, settings: Any) -> IntervalTrigger | CronTrigger:
        """The APScheduler trigger for this cadence in the configured time zone."""
        tz = ZoneInfo(settings.scheduler.timezone)
        if self.cron:
            return CronTrigger.from_crontab(self.cron_of(settings), timezone=tz)
        every = self.every_s(settings) if callable(self.every_s) else self.every_s
        return IntervalTrigger(seconds=float(every or 60), start_date=ORIGIN.replace(tzinfo=tz), timezone=tz)

    def cadence(self, settings: Any) -> str:
        """Human-readable cadence."""
        if self.cron:
            return f"cron '{self.cron_of(settings)}'"
        every = self.every_s(settings) if callable(self.every_s) else self.every_s
        return f"every {every:g}s"


@dataclass(frozen=True)
class Worker:
    """A background worker the leader runs beside the jobs: ``start(ctx)`` returns something with ``stop()``, or None when disabled."""

    name: str
    start: Callable[[Any], Any]


def job(id: str, *, description: str, every_s: float | Callable[[Any], float] | None = None, cron: str | Callable[[Any], str] | None = None,
        misfire_grace_s: float | Callable[[Any], float] | None = None) -> Callable[[Callable[[Any], str | None]], Callable[[Any], str | None]]:  # fmt: skip
    """Declare a scheduled job (decorator); the declaration rides on the function until the composition root collects it."""
    if (every_s is None) == (cron is None):
        raise ValueError(f"job {id}: give exactly one of every_s or cron")

    def deco(fn: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        fn.__job__ = JobSpec(id=id, func=fn, description=description, every_s=every_s, cron=cron, misfire_grace_s=misfire_grace_s)  # type: ignore[attr-defined]
        return fn

    return deco


def collect(*modules: Any) -> dict[str, JobSpec]:
    """Every job declared in ``modules`` (their ``@job`` functions), by id; an id declared twice is a programming error."""
    out: dict[str, JobSpec] = {}
    for mod in modules:
        for value in vars(mod).values():
            spec = getattr(value, "__job__", None)
            if isinstance(spec, JobSpec):
                if spec.id in out and out[spec.id].func is not spec.func:
                    raise ValueError(f"job id {spec.id!r} declared twice")
                out[spec.id] = spec
    return dict(sorted(out.items()))


def all_jobs(ctx: Context) -> dict[str, JobSpec]:
    """Every job the context was wired with."""
    return dict(ctx.wiring.jobs)


def get(ctx: Context, job_id: str) -> JobSpec:
    """One declared job by id, or a clear error listing the valid ids."""
    jobs = ctx.wiring.jobs
    if job_id not in jobs:
        raise SchedulerError(f"no job {job_id!r}", hint=f"known jobs: {', '.join(jobs)}")
    return jobs[job_id]


def latest_slot(trigger: IntervalTrigger | CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now``: the slot a run belongs to."""
    window = timedelta(seconds=1)
    while window < timedelta(days=800):
        t = trigger.get_next_fire_time(None, now - window)
        if t is not None and t <= now:
            while True:
                nxt = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
                if nxt is None or nxt > now:
                    return t
                t = nxt
        window *= 2
    return None
