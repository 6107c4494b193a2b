"""What the overview and the pool, DR, job and report pages show, gathered from each domain; a dependency that is down shows as such."""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.console.web import roles_may_read
from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.console.session import WebSession
    from control_plane.context import Context

log = logging.getLogger("govctl.console")


def _safely(what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, or ``{"error": …}`` when a dependency is down (the page still shows the rest)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - one broken panel must not take the overview down
        log.warning("console: %s unavailable: %s", what, exc)
        return {"error": f"{type(exc).__name__}: {getattr(exc, 'message', str(exc))[:200]}"}


def _ssh_up(addr: str) -> bool:
    try:
        with socket.create_connection((addr, 22), timeout=0.3):
            return True
    except OSError:
        return False


def pools(ctx: Context) -> list[dict[str, Any]]:
    """Every configured stack's hosts (primary and backup pool), each probed on its SSH port."""
    from control_plane.deploy.service import outputs

    out = []
    for name in ctx.settings.deploy.stacks:
        o = outputs(ctx, name) or {}
        hosts = [("primary", h, a) for h, a in (o.get("primary_hosts") or {}).items()] + [("backup", h, a) for h, a in (o.get("backup_hosts") or {}).items()]
        with ThreadPoolExecutor(max_workers=8) as ex:
            up = list(ex.map(lambda t: _ssh_up(t[2]), hosts))
        out.append({"stack": name, "deployed": bool(o), "hosts": [{"pool": p, "name": h, "address": a, "up": u} for (p, h, a), u in zip(hosts, up)],
                    "bucket": o.get("backup_bucket")})  # fmt: skip
    return out


def alert_counts(ctx: Context) -> dict[str, Any]:
    """Open and acknowledged alerts by severity (synthetic coverage alerts left out)."""
    from control_plane.soc.alerts import ALERTS_INDEX, ensure_index

    es = ctx.es
    ensure_index(es)
    res = es.search(index=ALERTS_INDEX, size=0, query={"bool": {"filter": [{"terms": {"status": ["open", "acknowledged"]}}],
                                                                "must_not": [{"term": {"kind": "synthetic"}}]}},
                    aggs={"sev": {"terms": {"field": "severity", "size": 10}}})  # fmt: skip
    by = {b["key"]: b["doc_count"] for b in res["aggregations"]["sev"]["buckets"]}
    return {"by_severity": by, "total": sum(by.values())}


def soc_lag(ctx: Context) -> dict[str, Any]:
    """The detection engine's lag: the oldest rule checkpoint behind now."""
    from control_plane.soc.detect import status

    rows = status(ctx)
    now = datetime.now(timezone.utc)
    lags = []
    for r in rows:
        if r.get("last_end"):
            lags.append((now - datetime.fromisoformat(str(r["last_end"]).replace("Z", "+00:00"))).total_seconds())
    return {"rules": len(rows), "lag_s": round(max(lags), 1) if lags else None, "errors": sum(1 for r in rows if r.get("last_error"))}


def dr(ctx: Context) -> dict[str, Any]:
    """Sources with their RPO, the newest snapshots, the drills."""
    from dr.access import open_repo
    from dr.drill import list_drills
    from dr.service import rpo_status

    repo = _safely("backup repository", open_repo, ctx)
    if isinstance(repo, dict):
        return {"rpo": repo, "snapshots": [], "drills": _safely("drills", list_drills, ctx)}
    snaps = _safely("snapshots", repo.snapshots)
    if isinstance(snaps, list):
        snaps = sorted(snaps, key=lambda s: s.get("time", ""), reverse=True)[:50]
    return {"rpo": _safely("rpo", rpo_status, ctx, repo), "snapshots": snaps, "drills": _safely("drills", list_drills, ctx)}


def drill_html(ctx: Context, drill_id: str) -> Path:
    """A drill's own HTML report."""
    from dr.drill import list_drills

    for d in list_drills(ctx):
        if d["id"] == drill_id:
            p = Path(d["path"]) / "report.html"
            if p.is_file():
                return p
    raise GovctlError(f"没有演练 {drill_id!r} 的报告 / no report for drill {drill_id!r}", hint="see the drills on the 灾备 page")


def jobs(ctx: Context) -> dict[str, Any]:
    """Jobs and their recent runs."""
    from control_plane.scheduler import list_jobs, recent_runs

    return {"jobs": list_jobs(ctx), "runs": recent_runs(ctx, None, 50)}


def reports(ctx: Context) -> dict[str, Any]:
    """Every revision, newest month first, with its deliveries."""
    from control_plane.report import deliver, store

    revs = sorted(store.all_revisions(ctx), key=lambda b: (b.month, b.revision), reverse=True)
    dels: dict[str, list[dict[str, Any]]] = {}
    for d in deliver.list_deliveries(ctx):
        dels.setdefault(d.get("month", ""), []).append(d)
    return {"revisions": revs, "deliveries": dels, "endpoint": bool(ctx.settings.report.endpoint)}


def gather(ctx: Context, s: WebSession) -> dict[str, Any]:
    """Everything the overview shows that this person's roles may read (panels they may not read are left out, not emptied)."""
    can = {r: roles_may_read(ctx.gate.policy, s.roles, r) for r in ("deploy.read", "services.read", "soc.read", "ops.read", "dr.read", "report.read")}
    o: dict[str, Any] = {"can": can}
    if can["deploy.read"]:
        o["pools"] = _safely("pools", pools, ctx)
    if can["services.read"]:
        o["services"] = _safely("services", lambda: [{"name": x.name, "health": x.health, "address": x.address} for x in ctx.supervisor.status()])
    if can["soc.read"]:
        o["alerts"] = _safely("alerts", alert_counts, ctx)
        o["soc"] = _safely("soc", soc_lag, ctx)
    o["pending"] = [v for v in ctx.gate.list(status="pending_approval", limit=100)]
    if can["dr.read"]:
        d = dr(ctx)
        o["rpo"] = d["rpo"]
        o["last_drill"] = d["drills"][0] if isinstance(d["drills"], list) and d["drills"] else None
    if can["report.read"]:
        month = datetime.now(timezone.utc).strftime("%Y-%m")
        r = _safely("reports", reports, ctx)
        o["report"] = r if isinstance(r, dict) and "error" in r else {
            "revisions": [b for b in r["revisions"]][:3], "deliveries": r["deliveries"], "this_month": month}  # fmt: skip
    return o
