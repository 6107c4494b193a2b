"""Scheduled jobs are declared beside their domain (``<domain>/scheduled.py``) and registered here.

A declaration has a stable id, a cadence (an interval or a cron expression, in the scheduler's
time zone) and a function taking the runtime. ``DOMAINS`` lists the modules that declare jobs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from control_plane.errors import GovctlError

DOMAINS = ("control_plane.audit.scheduled", "control_plane.gate.scheduled", "control_plane.scheduler.scheduled", "control_plane.soc.scheduled",
           "control_plane.report.scheduled", "dr.scheduled")
# Interval slots are counted from a fixed origin so every process computes the same slots.
ORIGIN = datetime(2020, 1, 1)


class SchedulerError(GovctlError):
    """Root of the scheduler's errors."""


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


_REGISTRY: dict[str, JobSpec] = {}


def job(id: str, *, description: str, every_s: float | Callable[[Any], float] | None = None, cron: str | Callable[[Any], str] | None = None,
        misfire_grace_s: float | Callable[[Any], float] | None = None) -> Callable[[Callable[[Any], str | None]], Callable[[Any], str | None]]:  # fmt: skip
    """Declare a scheduled job (decorator)."""
    if (every_s is None) == (cron is None):
        raise ValueError(f"job {id}: give exactly one of every_s or cron")

    def deco(fn: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
        if id in _REGISTRY and _REGISTRY[id].func is not fn:
            raise ValueError(f"job id {id!r} declared twice")
        _REGISTRY[id] = JobSpec(id=id, func=fn, description=description, every_s=every_s, cron=cron, misfire_grace_s=misfire_grace_s)
        return fn

    return deco


def all_jobs() -> dict[str, JobSpec]:
    """Every declared job, importing the domain modules that declare them."""
    for mod in DOMAINS:
        importlib.import_module(mod)
    return dict(sorted(_REGISTRY.items()))


def get(job_id: str) -> JobSpec:
    """One declared job by id, or a clear error listing the valid ids."""
    jobs = all_jobs()
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
