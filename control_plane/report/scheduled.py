"""The report's scheduled jobs: build and submit last month on the configured day; deliver what is due."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from control_plane.scheduler.registry import job


@job("report.monthly", description="build, sign and submit last month's report to the province (once per month)",
     cron=lambda s: s.report.schedule, misfire_grace_s=lambda s: s.report.misfire_grace_days * 86400)  # fmt: skip
def monthly(rt: Any) -> str:
    """Build last month (Asia/Shanghai) unless a revision exists, then put it in the delivery outbox and try once.

    The run key is per cron slot, so a second run in the same month does nothing; a run missed
    while the machine was off starts when it is back (within ``report.misfire_grace_days``).
    """
    from control_plane.report import deliver, store
    from control_plane.report.build import previous_month

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    month = previous_month(f"{now.year:04d}-{now.month:02d}")
    b = store.latest(rt, month)
    built = b is None or not store.load(b).get("final", True)
    if built:
        b = store.build(rt, month, actor="scheduler")
        rt.audit("report.build", target=month, actor="scheduler", role="system", source="scheduler",
                 details={"revision": b.revision, "digest_sm3": b.digest_sm3, "coverage_pct": b.coverage_pct})  # fmt: skip
    d = deliver.enqueue(rt, b)
    if d["status"] == "pending":
        d = deliver.attempt(rt, d)
    rt.audit("report.submit", target=month, actor="scheduler", role="system", source="scheduler", outcome="succeeded" if d["status"] == "delivered" else "failed",
             details={"revision": b.revision, "status": d["status"], "attempts": d["attempts"], "error": d["last_error"]})  # fmt: skip
    return f"{month} r{b.revision} {'built' if built else 'already built'}; delivery {d['status']}" + (f" ({d['last_error']})" if d["last_error"] else "")


@job("report.deliver", description="retry report deliveries that are due (back-off while the province's endpoint is down)", every_s=60)
def deliver_due(rt: Any) -> str:
    """Attempt every pending delivery whose next attempt has come."""
    from control_plane.report import deliver

    done = deliver.deliver_due(rt)
    for d in done:
        rt.audit("report.submit", target=d["month"], actor="scheduler", role="system", source="scheduler",
                 outcome="succeeded" if d["status"] == "delivered" else "failed",
                 details={"revision": d["revision"], "status": d["status"], "attempts": d["attempts"], "error": d["last_error"]})  # fmt: skip
    return f"{len(done)} attempted: " + (", ".join(f"{d['month']} r{d['revision']} {d['status']}" for d in done) or "none due")
