"""The report's scheduled jobs: build and submit last month on the configured day; deliver what is due.

Both go through the gate as ``system:scheduler`` with the same operations and checks a person's
request takes (``report.build``, ``report.submit``), so the scheduler cannot do what a person could not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane import clock
from control_plane.gate import OperationRequest, system_principal
from control_plane.report import deliver, store
from control_plane.report.build import previous_month
from control_plane.scheduler.registry import job

if TYPE_CHECKING:
    from control_plane.context import Context

SCHEDULER = system_principal("system:scheduler")


@job("report.monthly", description="build, sign and submit last month's report to the province (once per month)",
     cron=lambda s: s.report.schedule, misfire_grace_s=lambda s: s.report.misfire_grace_days * 86400)  # fmt: skip
def monthly(ctx: Context) -> str:
    """Build last month (Asia/Shanghai) unless a final revision exists, then submit it.

    The run key is per cron slot, so a second run in the same month does nothing; a run missed
    while the machine was off starts when it is back (within ``report.misfire_grace_days``).
    """
    now = clock.now().astimezone(clock.SHOWN_TZ)
    month = previous_month(f"{now.year:04d}-{now.month:02d}")
    prior = store.latest(ctx, month)
    built = prior is None or not store.load(prior).get("final", True)
    if built:
        ctx.gate.submit(SCHEDULER, OperationRequest("report.build", month, {}, reason="monthly report to the province"))
    b = store.latest(ctx, month)
    view = ctx.gate.submit(SCHEDULER, OperationRequest("report.submit", month, {"revision": b.revision}, reason="monthly report to the province"))
    d = view.result
    return f"{month} r{b.revision} {'built' if built else 'already built'}; delivery {d['status']}" + (f" ({d['last_error']})" if d.get("last_error") else "")


@job("report.deliver", description="retry report deliveries that are due (back-off while the province's endpoint is down)", every_s=60)
def deliver_due(ctx: Context) -> str:
    """Submit again, through the gate, every pending delivery whose next attempt has come."""
    done = []
    for d in deliver.due(ctx):
        view = ctx.gate.submit(SCHEDULER, OperationRequest("report.submit", d["month"], {"revision": d["revision"]}, reason="delivery retry"))
        done.append(view.result)
    return f"{len(done)} attempted: " + (", ".join(f"{d['month']} r{d['revision']} {d['status']}" for d in done) or "none due")
