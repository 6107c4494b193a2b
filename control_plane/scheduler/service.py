"""APScheduler 3 wired to the state DB: persistent job store, leader election, job sync, commands."""

from __future__ import annotations

import functools
import json
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import desc, func, select

from control_plane.scheduler.leader import LeaderLock
from control_plane.scheduler.registry import SchedulerError, all_jobs, get
from control_plane.scheduler.runner import job_runs, run_job

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.scheduler")
ENTRY = "control_plane.scheduler.runner:run_scheduled"


class JsonJobStore(SQLAlchemyJobStore):
    """APScheduler's SQL job store without pickles: a row holds only the job's id and its next run time as JSON.

    Everything else (the function, its argument, the trigger, the misfire grace) comes from the
    job's declaration in code, so a row that someone with write access to the state DB forged can
    at most move a declared job's next run; it can never name code to run. Rows that do not parse
    (old pickled ones, for instance) are dropped by APScheduler and re-added by ``sync_jobs``.
    """

    def __init__(self, rt: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rt = rt

    def _state(self, job: Any) -> bytes:
        nrt = job.next_run_time
        return json.dumps({"id": job.id, "next_run_time": nrt.isoformat() if nrt else None}).encode()

    def add_job(self, job: Any) -> None:
        """Insert a job's JSON row."""
        from apscheduler.jobstores.base import ConflictingIdError
        from apscheduler.util import datetime_to_utc_timestamp
        from sqlalchemy.exc import IntegrityError

        with self.engine.begin() as conn:
            try:
                conn.execute(self.jobs_t.insert().values(id=job.id, next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=self._state(job)))
            except IntegrityError:
                raise ConflictingIdError(job.id) from None

    def update_job(self, job: Any) -> None:
        """Update a job's next run time."""
        from apscheduler.util import datetime_to_utc_timestamp

        with self.engine.begin() as conn:
            n = conn.execute(self.jobs_t.update().where(self.jobs_t.c.id == job.id)
                             .values(next_run_time=datetime_to_utc_timestamp(job.next_run_time), job_state=self._state(job))).rowcount  # fmt: skip
        if n == 0:
            raise JobLookupError(job.id)

    def _reconstitute_job(self, job_state: bytes) -> Any:
        from apscheduler.job import Job

        data = json.loads(job_state)  # anything but our JSON (a pickle) raises, and APScheduler drops the row
        jid = data["id"]
        spec = all_jobs(self.rt)[jid]  # an undeclared id raises too
        nrt = datetime.fromisoformat(data["next_run_time"]) if data["next_run_time"] else None
        grace = spec.grace(self.rt.settings)
        job = Job.__new__(Job)
        job.__setstate__({
            "version": 1, "id": jid, "func": ENTRY, "trigger": spec.trigger(self.rt.settings), "executor": "default",
            "args": (), "kwargs": {}, "name": spec.description, "coalesce": True, "max_instances": 1,
            "misfire_grace_time": int(grace) if grace else self.rt.settings.scheduler.misfire_grace_s, "next_run_time": nrt,
        })  # fmt: skip
        job.func = functools.partial(run_job, self.rt, jid, trigger="schedule")  # the context is an argument, never a global
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job


def build(rt: Context) -> BackgroundScheduler:
    """A scheduler on the persistent (JSON, never pickled) job store, in the configured time zone."""
    s = rt.settings.scheduler
    return BackgroundScheduler(
        jobstores={"default": JsonJobStore(rt, engine=rt.engine, tablename="apscheduler_jobs")},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": s.misfire_grace_s},
        timezone=ZoneInfo(s.timezone),
    )


def sync_jobs(rt: Context, sched: BackgroundScheduler) -> None:
    """Make the store match the declarations: add new jobs, update changed cadences (keeping pauses), drop removed ones."""
    declared = all_jobs(rt)
    for jid, spec in declared.items():
        trig = spec.trigger(rt.settings)
        grace = spec.grace(rt.settings)
        extra = {"misfire_grace_time": int(grace)} if grace else {}
        existing = sched.get_job(jid)
        if existing is None:
            sched.add_job(ENTRY, trigger=trig, args=[jid], id=jid, name=spec.description, replace_existing=True, **extra)
        else:
            if str(existing.trigger) != str(trig):
                paused = existing.next_run_time is None
                sched.reschedule_job(jid, trigger=trig)
                if paused:
                    sched.pause_job(jid)
            if grace and existing.misfire_grace_time != int(grace):
                sched.modify_job(jid, misfire_grace_time=int(grace))
    for j in sched.get_jobs():
        if j.id not in declared:
            log.warning("removing job %s: no longer declared", j.id)
            sched.remove_job(j.id)


class SchedulerService:
    """Runs jobs only while this process holds the leader lock; others stand by and retry."""

    def __init__(self, rt: Context) -> None:
        self.rt = rt
        self.lock = LeaderLock(rt.engine, rt.settings.var / "run" / "scheduler.leader")
        self.sched: BackgroundScheduler | None = None
        self.workers: dict[str, Any] = {}  # the domains' background workers (SOC streaming detector, WAL shipping), run by the leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def role(self) -> str:
        """'leader' or 'standby'."""
        return "leader" if self.sched is not None else "standby"

    def start(self) -> None:
        """Start the election loop in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="govctl-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        poll = self.rt.settings.scheduler.leader_poll_s
        while not self._stop.is_set():
            try:
                if self.sched is None and self.lock.try_acquire():
                    from control_plane.scheduler.runner import reap_dead_runs

                    for key in reap_dead_runs(self.rt):  # what a dead leader on this host left half-done
                        log.warning("scheduler: run %s was left running by a process that died; marked failed", key)
                    sched = build(self.rt)
                    sched.start(paused=True)
                    sync_jobs(self.rt, sched)
                    sched.resume()
                    self._start_stream()
                    self.sched = sched
                    log.info("scheduler: this process is the leader (%s lock)", self.lock.kind)
                elif self.sched is not None:
                    if not self.lock.held:
                        log.warning("scheduler: lost the leader lock; standing by")
                        self._shutdown_sched()
                    else:
                        self.sched.wakeup()  # notice pauses/resumes made by other processes
            except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                log.exception("scheduler loop error")
            self._stop.wait(poll)

    def _start_stream(self) -> None:
        for w in self.rt.wiring.workers:
            try:
                handle = w.start(self.rt)
            except Exception:  # noqa: BLE001 - one worker failing to start must not stop the jobs; it is logged
                log.exception("worker %s did not start", w.name)
                continue
            if handle is not None:
                self.workers[w.name] = handle

    def _shutdown_sched(self) -> None:
        for name, handle in list(self.workers.items()):
            try:
                handle.stop()
            except Exception:  # noqa: BLE001 - stopping the others matters more
                log.exception("worker %s did not stop cleanly", name)
            self.workers.pop(name, None)
        if self.sched is not None:
            self.sched.shutdown(wait=True)
            self.sched = None
        self.lock.release()

    def stop(self) -> None:
        """Stop running jobs (waits for running ones) and give up leadership."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        self._shutdown_sched()


class _Admin:
    """A paused scheduler bound to the shared store, for list/pause/resume from any process."""

    def __init__(self, rt: Context) -> None:
        self.rt = rt
        self.sched = build(rt)

    def __enter__(self) -> BackgroundScheduler:
        self.sched.start(paused=True)
        sync_jobs(self.rt, self.sched)
        return self.sched

    def __exit__(self, *exc: object) -> None:
        self.sched.shutdown(wait=False)


def list_jobs(rt: Context) -> list[dict[str, Any]]:
    """Every job: cadence, next run, paused, last run and its outcome."""
    specs = all_jobs(rt)
    tz = ZoneInfo(rt.settings.scheduler.timezone)
    with _Admin(rt) as sched:
        jobs = {j.id: j for j in sched.get_jobs()}
    last: dict[str, Any] = {}
    with rt.engine.connect() as conn:
        sub = select(job_runs.c.job_id, func.max(job_runs.c.started).label("m")).group_by(job_runs.c.job_id).subquery()
        q = select(job_runs).join(sub, (job_runs.c.job_id == sub.c.job_id) & (job_runs.c.started == sub.c.m))
        for r in conn.execute(q):
            last[r.job_id] = r
    out = []
    for jid, spec in specs.items():
        j = jobs.get(jid)
        nrt = j.next_run_time.astimezone(tz).isoformat(timespec="seconds") if j and j.next_run_time else None
        lr = last.get(jid)
        out.append({
            "id": jid, "description": spec.description, "cadence": spec.cadence(rt.settings),
            "paused": j is not None and j.next_run_time is None, "next_run": nrt,
            "last_run": lr.started if lr else None, "last_status": lr.status if lr else None,
            "last_detail": lr.detail if lr else None,
        })  # fmt: skip
    return out


def set_paused(rt: Context, job_id: str, paused: bool) -> dict[str, Any]:
    """Pause or resume a job in the shared store (the leader notices within its poll interval)."""
    get(rt, job_id)
    with _Admin(rt) as sched:
        try:
            (sched.pause_job if paused else sched.resume_job)(job_id)
        except JobLookupError:
            raise SchedulerError(f"job {job_id!r} is not in the job store") from None
        j = sched.get_job(job_id)
        return {"id": job_id, "paused": j.next_run_time is None,
                "next_run": j.next_run_time.isoformat(timespec="seconds") if j.next_run_time else None}  # fmt: skip


def recent_runs(rt: Context, job_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest job runs, optionally for one job."""
    q = select(job_runs).order_by(desc(job_runs.c.started)).limit(limit)
    if job_id:
        q = q.where(job_runs.c.job_id == job_id)
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def now_local(rt: Context) -> datetime:
    """Now in the scheduler's time zone."""
    return datetime.now(ZoneInfo(rt.settings.scheduler.timezone))
