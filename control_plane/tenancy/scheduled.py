"""Reclamation (回收): expired and under-used hosts get a reclamation request; approved ones are carried out.

Each request is ``resource.return`` submitted by ``system:scheduler`` through the gate: it waits
for the bureau's approver like a person's would, and the department answers it first — confirm
(give the host back) or justify (keep it, and why) — with ``govctl resource answer``. What the
approver decides is then carried out by this job.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select

from control_plane.gate import OperationRequest, system_principal
from control_plane.gate.models import operations
from control_plane.scheduler.registry import job
from control_plane.tenancy import service as ten

if TYPE_CHECKING:
    from control_plane.context import Context

SCHEDULER = system_principal("system:scheduler")
OPEN = ("pending_approval", "approved", "running")


def _open_reclaims(ctx: Context) -> dict[str, dict[str, Any]]:
    """Reclamation requests not decided yet, by allocation."""
    with ctx.engine.connect() as c:
        rows = c.execute(select(operations.c.id, operations.c.target, operations.c.origin, operations.c.status).where(
            and_(operations.c.requester == SCHEDULER.name, operations.c.operation == "resource.return", operations.c.status.in_(OPEN)))).all()  # fmt: skip
    return {r.target: {"op": r.id, "status": r.status, "origin": json.loads(r.origin) if r.origin else {}} for r in rows}


def _kind(origin: str | None) -> tuple[str | None, str | None]:
    """(expired | underused, month) from a reclamation request's origin ``{"job": "resource.reclaim:<kind>[:<month>]"}``."""
    job_ = (json.loads(origin) if origin else {}).get("job", "")
    parts = job_.split(":")
    if parts[0] != "resource.reclaim" or len(parts) < 2:
        return None, None
    return parts[1], parts[2] if len(parts) > 2 else None


def _underused_last_month(ctx: Context) -> tuple[str, dict[str, dict[str, Any]]]:
    """Hosts the previous month's report lists as under-used (a whole month of low CPU), by host name."""
    from control_plane import clock
    from control_plane.report import store
    from control_plane.report.build import previous_month

    now = clock.now().astimezone(clock.SHOWN_TZ)
    month = previous_month(f"{now.year:04d}-{now.month:02d}")
    b = store.latest(ctx, month)
    if b is None:
        return month, {}
    doc = store.load(b)
    return month, {u["host"]: u for u in doc.get("underused", [])}


def reclaim_requests(ctx: Context, *, today: date | None = None, underused: tuple[str, dict[str, dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Submit a reclamation request for each expired host and each host under-used all last month (once each).

    ``underused``: (month, the report's under-used hosts by name); default: the previous month's latest report revision.
    """
    today = today or date.today()
    open_ = _open_reclaims(ctx)
    month, idle = underused if underused is not None else _underused_last_month(ctx)
    made = []
    with ctx.engine.connect() as c:
        done_months = {(r.target, _kind(r.origin)[1]) for r in c.execute(select(operations.c.target, operations.c.origin).where(
            and_(operations.c.requester == SCHEDULER.name, operations.c.operation == "resource.return")))}  # fmt: skip
    for a in ten.listing(ctx):
        if a["id"] in open_:
            continue
        why, origin = None, {}
        if a["expires"] and date.fromisoformat(a["expires"]) < today:
            why, origin = f"到期自动回收申请：{a['host']} 到期日 {a['expires']}", {"job": "resource.reclaim:expired"}
        elif a["host"] in idle and (a["id"], month) not in done_months:
            u = idle[a["host"]]
            why = f"低利用率回收申请：{a['host']} 在 {month} 整月 CPU 平均 {u.get('cpu_mean')}，P95 {u.get('cpu_p95')}；请部门确认或说明理由"
            origin = {"job": f"resource.reclaim:underused:{month}"}
        if why is None:
            continue
        view = ctx.gate.submit(SCHEDULER, OperationRequest("resource.return", a["id"], {}, reason=why, origin=origin))
        made.append({"allocation": a["id"], "department": a["department"], "op": view.id, "kind": _kind(json.dumps(origin))[0]})
    return made


def run_approved(ctx: Context) -> list[dict[str, Any]]:
    """Carry out the reclamation requests the bureau approved."""
    from control_plane.errors import GovctlError

    out = []
    for aid, r in _open_reclaims(ctx).items():
        if r["status"] != "approved":
            continue
        try:
            view = ctx.gate.run(SCHEDULER, r["op"])
            out.append({"allocation": aid, "op": r["op"], "status": view.status})
        except GovctlError as exc:
            out.append({"allocation": aid, "op": r["op"], "status": "failed", "error": exc.one_line()})
    return out


@job("resource.reclaim", description="reclamation requests for expired and under-used departments' hosts; carry out approved ones", cron="0 9 * * *")
def reclaim(ctx: Context) -> str:
    """One pass: new requests, then the approved ones."""
    made = reclaim_requests(ctx)
    ran = run_approved(ctx)
    names = ", ".join(f"{m['allocation']} {m['kind']}" for m in made) or "none"
    return f"{len(made)} reclamation requests ({names}); {len(ran)} carried out"
