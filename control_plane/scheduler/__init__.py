"""The scheduler: APScheduler 3, a persistent job store, one leader, one run per slot."""

from control_plane.scheduler.registry import SchedulerError, all_jobs, job
from control_plane.scheduler.runner import RunResult, run_job
from control_plane.scheduler.service import SchedulerService, list_jobs, recent_runs, set_paused

__all__ = ["SchedulerError", "all_jobs", "job", "RunResult", "run_job", "SchedulerService", "list_jobs", "recent_runs", "set_paused"]
