"""The scheduler: stable slots, one run per slot, one leader across processes, persistent pauses."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from control_plane.context import Context
from control_plane.scheduler import SchedulerError, SchedulerService, job, list_jobs, run_job, set_paused
from control_plane.scheduler.leader import LeaderLock
from control_plane.scheduler.registry import collect, latest_slot

SH = ZoneInfo("Asia/Shanghai")
CALLS: dict[str, int] = {}


@job("test.count", description="counts its runs (tests only)", every_s=1)
def _count(rt: Context) -> str:
    CALLS["test.count"] = CALLS.get("test.count", 0) + 1
    return "counted"


@job("test.flaky", description="fails the first time (tests only)", cron="0 1 * * *")
def _flaky(rt: Context) -> str:
    CALLS["test.flaky"] = CALLS.get("test.flaky", 0) + 1
    if CALLS["test.flaky"] == 1:
        raise RuntimeError("disk full")
    return "ok"


def _with_test_jobs(ctx: Context) -> Context:
    """The same context with this module's test jobs wired in beside the declared ones."""
    w = ctx.wiring
    return Context(ctx.settings, dataclasses.replace(w, jobs={**w.jobs, **collect(sys.modules[__name__])}))


@pytest.fixture()
def runtime(runtime: Context) -> Context:
    """The shared fixture's context, with the test jobs."""
    return _with_test_jobs(runtime)


@pytest.fixture()
def sqlite_runtime(sqlite_runtime: Context) -> Context:
    """The shared fixture's SQLite context, with the test jobs."""
    return _with_test_jobs(sqlite_runtime)


def test_latest_slot_monthly_cron_in_shanghai() -> None:
    """A 1st-of-month 02:00 Shanghai job's slot on 15 March is 1 March 02:00 +08:00."""
    trig = CronTrigger.from_crontab("0 2 1 * *", timezone=SH)
    slot = latest_slot(trig, datetime(2026, 3, 15, 12, 0, tzinfo=SH))
    assert slot == datetime(2026, 3, 1, 2, 0, tzinfo=SH)
    assert latest_slot(trig, datetime(2026, 3, 1, 1, 59, tzinfo=SH)) == datetime(2026, 2, 1, 2, 0, tzinfo=SH)


def test_interval_slots_are_shared_across_processes(sqlite_runtime: Context) -> None:
    """Two separately built triggers for a 5 s job agree on the slot (fixed origin)."""
    from control_plane.scheduler.registry import get

    spec = get(sqlite_runtime, "audit.mirror")
    now = datetime.now(SH)
    a = latest_slot(spec.trigger(sqlite_runtime.settings), now)
    b = latest_slot(spec.trigger(sqlite_runtime.settings), now)
    assert a == b and a.second % 5 == 0 and (now - a).total_seconds() < 5


def test_same_slot_runs_once(runtime: Context) -> None:
    """Running a job twice for one slot does the work once; the second is skipped."""
    CALLS.clear()
    first = run_job(runtime, "test.count", slot="2026-11-01T00:00:00+08:00")
    second = run_job(runtime, "test.count", slot="2026-11-01T00:00:00+08:00")
    assert (first.status, second.status) == ("succeeded", "skipped")
    assert CALLS["test.count"] == 1
    assert run_job(runtime, "test.count", slot="2026-11-01T00:00:01+08:00").status == "succeeded"
    assert CALLS["test.count"] == 2


def test_failed_slot_can_run_again(sqlite_runtime: Context) -> None:
    """A failed run is recorded with its error and the slot may be retried; a success then sticks."""
    CALLS.clear()
    slot = "2026-11-02T01:00:00+08:00"
    r1 = run_job(sqlite_runtime, "test.flaky", slot=slot)
    assert r1.status == "failed" and "disk full" in r1.detail
    assert run_job(sqlite_runtime, "test.flaky", slot=slot).status == "succeeded"
    assert run_job(sqlite_runtime, "test.flaky", slot=slot).status == "skipped"
    assert CALLS["test.flaky"] == 2


def test_unknown_job_lists_known(sqlite_runtime: Context) -> None:
    """A wrong job id is refused with the list of valid ids."""
    with pytest.raises(SchedulerError) as ei:
        run_job(sqlite_runtime, "audit.nope")
    assert "audit.verify" in ei.value.hint


def test_pause_survives_a_new_process(runtime: Context) -> None:
    """A pause is stored in the persistent job store and seen by a fresh listing; resume restores it."""
    set_paused(runtime, "audit.verify", True)
    assert next(j for j in list_jobs(runtime) if j["id"] == "audit.verify")["paused"] is True
    res = set_paused(runtime, "audit.verify", False)
    assert res["paused"] is False and res["next_run"].endswith("+08:00")
    assert next(j for j in list_jobs(runtime) if j["id"] == "audit.verify")["next_run"].startswith(res["next_run"][:16])


HOLDER = textwrap.dedent(
    """
    import sys, time
    from control_plane.config import load
    from control_plane.context import Context
    from control_plane.wiring import context_for
    from control_plane.scheduler.leader import LeaderLock
    rt = context_for(load(sys.argv[1]))
    lock = LeaderLock(rt.engine, rt.settings.var / "run" / "scheduler.leader")
    print("got" if lock.try_acquire() else "no", flush=True)
    time.sleep(120)
    """
)


def test_leader_lock_across_processes_released_on_death(runtime: Context, tmp_path: Path) -> None:
    """Another process holding leadership keeps us standby; SIGKILL it and we lead (file and PG locks)."""
    runtime.engine  # migrate first
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "govctl.yaml")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "got"
        lock = LeaderLock(runtime.engine, runtime.settings.var / "run" / "scheduler.leader")
        assert lock.try_acquire() is False
        if lock.kind == "file":
            assert lock.holder()["pid"] == p.pid
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 10
        while not lock.try_acquire():
            assert time.monotonic() < deadline, "lock not released after the holder died"
            time.sleep(0.2)
        lock.release()
    finally:
        p.kill()
        p.wait()


def test_only_one_scheduler_leads_and_failover(sqlite_runtime: Context) -> None:
    """Two scheduler services: one leads and runs jobs, the other stands by and takes over when it stops."""
    rt = sqlite_runtime
    object.__setattr__(rt.settings.scheduler, "leader_poll_s", 0.2)
    object.__setattr__(rt.settings.soc, "stream_poll_s", 0.5)
    CALLS.clear()
    a, b = SchedulerService(rt), SchedulerService(rt)
    a.start()
    deadline = time.monotonic() + 30
    while a.role != "leader":  # observed, not slept for: b starts once a leads
        assert time.monotonic() < deadline, "the first scheduler never became the leader"
        time.sleep(0.05)
    b.start()
    try:
        deadline = time.monotonic() + 10
        while CALLS.get("test.count", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert CALLS.get("test.count", 0) >= 2, "the leader did not run the 1 s job"
        assert (a.role, b.role) == ("leader", "standby")
        # the SOC streaming detector runs beside the jobs, on the leader only
        assert "soc.stream" in a.workers and "soc.stream" not in b.workers
        a.stop()
        assert a.workers == {}
        deadline = time.monotonic() + 10
        while b.role != "leader" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b.role == "leader"
        deadline = time.monotonic() + 10
        while "soc.stream" not in b.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "soc.stream" in b.workers
    finally:
        a.stop()
        b.stop()
    from control_plane.scheduler import recent_runs

    keys = [r["run_key"] for r in recent_runs(rt, "test.count", limit=1000)]
    assert len(keys) == len(set(keys))
