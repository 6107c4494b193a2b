"""Computing one calendar month's report (Asia/Shanghai month boundaries).

Figures come from Prometheus' recorded series on a grid whose step keeps every series under
11,000 points, plus the control plane's own records (audit ledger, gate, SOC alerts, drills).
Gaps stay gaps: statistics are over the points that exist, and every figure carries the share
of the month it is based on (``coverage``). A missing point is never a zero.

Statistics: mean, p95 (nearest rank: the ⌈0.95·n⌉-th smallest value) and peak (maximum).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np

from control_plane.errors import GovctlError
from control_plane.report.prom import Grid, Prom, choose_step
from control_plane.report.registry import Registry

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.report")
SH = ZoneInfo("Asia/Shanghai")
SCHEMA_ID = "govctl.monthly-report/1"
GIB = 1024**3

# expression per host figure (recorded series from monitors/rules/recording.yml)
HOST_SERIES = {
    "cpu": "instance:node_cpu_utilisation:ratio",
    "vcpu": "instance:node_cpus:count",
    "memory": "instance:node_memory_utilisation:ratio",
    "memory_bytes": "instance:node_memory_total:bytes",
    "disk": "instance:node_filesystem_utilisation:ratio",
    "disk_bytes": "instance:node_filesystem_size:bytes",
    "rx": "instance:node_network_receive_bytes:rate5m",
    "tx": "instance:node_network_transmit_bytes:rate5m",
}
HOST_KEYS = ("instance", "stack", "pool", "network_zone", "department", "host")


class ReportInputError(GovctlError):
    """The month asked for cannot be built."""

    http_status = 422
    exit_code = 2


def month_window(month: str) -> tuple[datetime, datetime]:
    """[first day 00:00, next month's first day 00:00) in Asia/Shanghai."""
    try:
        y, m = (int(x) for x in month.split("-"))
        start = datetime(y, m, 1, tzinfo=SH)
    except (ValueError, TypeError):
        raise ReportInputError(f"month {month!r} is not YYYY-MM", hint="for example --month 2026-10") from None
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=SH)
    return start, end


def previous_month(month: str) -> str:
    """The month before YYYY-MM."""
    start, _ = month_window(month)
    p = start - timedelta(days=1)
    return f"{p.year:04d}-{p.month:02d}"


def stats(a: np.ndarray) -> dict[str, float | None]:
    """Mean, nearest-rank p95 and peak over the points present, and the share present."""
    v = a[~np.isnan(a)]
    n = len(a)
    if not len(v):
        return {"mean": None, "p95": None, "peak": None, "coverage": 0.0}
    s = np.sort(v)
    return {"mean": float(v.mean()), "p95": float(s[max(0, math.ceil(0.95 * len(s)) - 1)]), "peak": float(s[-1]),
            "coverage": round(len(v) / n, 6) if n else 0.0}  # fmt: skip


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _rs(d: dict[str, float | None], nd: int = 4) -> dict[str, float | None]:
    return {k: _r(v, nd if k != "coverage" else 6) for k, v in d.items()}


def _key(labels: tuple[tuple[str, str], ...]) -> str:
    return dict(labels).get("instance", "")


class Builder:
    """Builds the report document for one month."""

    def __init__(self, rt: Context, registry: Registry, prom: Prom, month: str, *, now: datetime | None = None) -> None:
        self.rt = rt
        self.reg = registry
        self.prom = prom
        self.month = month
        self.start, self.end = month_window(month)
        self.now = now or datetime.now(timezone.utc)
        if self.start >= self.now:
            raise ReportInputError(f"month {month} has not begun")
        self.grid = Grid(self.start, self.end, choose_step((self.end - self.start).total_seconds()))
        self.notes: list[str] = []
        if self.end > self.now:
            self.notes.append("本月尚未结束，本版为临时版（数据截至生成时刻），不报送；月末后生成正式版。")

    # -- Prometheus -----------------------------------------------------------------------------

    def host_series(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
        """Per host: its labels, and each figure's series on the grid."""
        meta: dict[str, dict[str, Any]] = {}
        data: dict[str, dict[str, np.ndarray]] = {}
        for fig, expr in HOST_SERIES.items():
            for labels, arr in self.prom.range(expr, self.grid).items():
                inst = _key(labels)
                meta.setdefault(inst, {k: dict(labels).get(k, "") for k in HOST_KEYS})
                data.setdefault(inst, {})[fig] = arr
        up = self.prom.range('up{job="node"}', self.grid)
        for labels, arr in up.items():
            inst = _key(labels)
            meta.setdefault(inst, {k: dict(labels).get(k, "") for k in HOST_KEYS})
            data.setdefault(inst, {})["up"] = arr
        return meta, data

    def coverage(self) -> dict[str, Any]:
        """How much of the month Prometheus has data for at all (its own scrape gaps)."""
        any_up = self.prom.range("count(up)", self.grid)
        arr = next(iter(any_up.values()), np.full(self.grid.n, np.nan))
        present = ~np.isnan(arr)
        gaps = []
        i = 0
        while i < self.grid.n:
            if not present[i]:
                j = i
                while j < self.grid.n and not present[j]:
                    j += 1
                a = self.start + timedelta(seconds=i * self.grid.step)
                b = self.start + timedelta(seconds=j * self.grid.step)
                if b > self.now:
                    b = max(a, self.now.astimezone(SH))
                if b > a:
                    gaps.append({"from": a.isoformat(), "to": b.isoformat(), "hours": round((b - a).total_seconds() / 3600, 2)})
                i = j
            else:
                i += 1
        elapsed = min(self.grid.n, max(0, int(((min(self.now, self.end) - self.start).total_seconds()) // self.grid.step)))
        covered = int(present[:elapsed].sum()) if elapsed else 0
        return {"prometheus_pct": round(100 * covered / self.grid.n, 3), "elapsed_pct": round(100 * elapsed / self.grid.n, 3),
                "gaps": gaps[:100], "gap_count": len(gaps)}  # fmt: skip

    # -- figures --------------------------------------------------------------------------------

    def hosts(self, meta: dict[str, dict[str, Any]], data: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
        """One row per host."""
        cfg = self.rt.settings.report
        rows = []
        for inst in sorted(meta):
            d, m = data[inst], meta[inst]
            nan = np.full(self.grid.n, np.nan)
            up = d.get("up", nan)
            present_up = up[~np.isnan(up)]
            cpu = stats(d.get("cpu", nan))
            seen = np.flatnonzero(~np.isnan(up) | ~np.isnan(d.get("cpu", nan)))
            net = {}
            for k in ("rx", "tx"):
                a = d.get(k, nan)
                st = stats(a)
                total = float(np.nansum(a) * self.grid.step) if st["mean"] is not None else None
                net[k] = {"mean_bps": _r(st["mean"], 1), "peak_bps": _r(st["peak"], 1), "total_gib": _r(total / GIB if total is not None else None, 3)}
            dept = self.reg.department(m["department"])
            row = {
                "instance": inst, "host": m["host"] or inst.split(":")[0], "stack": m["stack"] or None, "pool": m["pool"] or "unknown",
                "network_zone": m["network_zone"] or "unknown", "department": m["department"] or "unattributed",
                "department_name": dept.name if dept else None,
                "vcpu": _r(np.nanmax(d["vcpu"]) if "vcpu" in d and not np.isnan(d["vcpu"]).all() else None, 0),
                "memory_gib": _r(np.nanmax(d["memory_bytes"]) / GIB if "memory_bytes" in d and not np.isnan(d["memory_bytes"]).all() else None, 2),
                "storage_gib": _r(np.nanmax(d["disk_bytes"]) / GIB if "disk_bytes" in d and not np.isnan(d["disk_bytes"]).all() else None, 2),
                "cpu": _rs(cpu), "memory": _rs(stats(d.get("memory", nan))), "disk": _rs(stats(d.get("disk", nan))), "network": net,
                "availability_pct": _r(100 * float((present_up == 1).sum()) / len(present_up), 3) if len(present_up) else None,
                "availability_coverage": round(len(present_up) / self.grid.n, 6),
                "first_seen": (self.start + timedelta(seconds=int(seen[0]) * self.grid.step)).isoformat() if len(seen) else None,
                "last_seen": (self.start + timedelta(seconds=int(seen[-1]) * self.grid.step)).isoformat() if len(seen) else None,
            }  # fmt: skip
            row["underused"] = bool(cpu["mean"] is not None and cpu["coverage"] >= 0.5 and cpu["mean"] < cfg.underused_cpu_mean
                                    and (cpu["p95"] or 0) < cfg.underused_cpu_p95)  # fmt: skip
            rows.append(row)
        return rows

    def _aggregate(self, insts: list[str], data: dict[str, dict[str, np.ndarray]], hosts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Allocated vs used for a set of hosts: per step, used = Σ utilisation × allocation over the hosts present."""
        out: dict[str, Any] = {"hosts": len(insts)}
        n = self.grid.n
        for fig, key in (("cpu", "vcpu"), ("memory", "memory_gib"), ("disk", "storage_gib")):
            used = np.zeros(n)
            alloc_t = np.zeros(n)
            any_present = np.zeros(n, dtype=bool)
            allocated = 0.0
            for i in insts:
                a = data[i].get(fig)
                size = hosts[i].get(key)
                if a is None or size is None:
                    continue
                allocated += size
                ok = ~np.isnan(a)
                used[ok] += a[ok] * size
                alloc_t[ok] += size
                any_present |= ok
            ratio = np.where(any_present & (alloc_t > 0), used / np.where(alloc_t > 0, alloc_t, 1), np.nan)
            used_abs = np.where(any_present, used, np.nan)
            out[key] = {"allocated": _r(allocated, 2), "used": _rs(stats(used_abs), 3), "utilisation": _rs(stats(ratio))}
        rx = sum((hosts[i]["network"]["rx"]["total_gib"] or 0) for i in insts)
        tx = sum((hosts[i]["network"]["tx"]["total_gib"] or 0) for i in insts)
        out["network"] = {"rx_total_gib": round(rx, 3), "tx_total_gib": round(tx, 3)}
        ups = [data[i].get("up") for i in insts if data[i].get("up") is not None]
        if ups:
            stacked = np.concatenate(ups)
            present = stacked[~np.isnan(stacked)]
            out["availability_pct"] = _r(100 * float((present == 1).sum()) / len(present), 3) if len(present) else None
        else:
            out["availability_pct"] = None
        return out

    def pools(self, rows: list[dict[str, Any]], data: dict[str, dict[str, np.ndarray]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Per pool, per network zone and per department."""
        by_inst = {r["instance"]: r for r in rows}
        pools = []
        for name in sorted({r["pool"] for r in rows} | set(self.reg.pools)):
            insts = [r["instance"] for r in rows if r["pool"] == name]
            reg = self.reg.pools.get(name)
            agg = self._aggregate(insts, data, by_inst)
            cap = reg.capacity if reg else None
            agg.update({
                "pool": name, "name": reg.name if reg else name, "network_zone": reg.network_zone if reg else "unknown",
                "capacity": cap.model_dump() if cap else None,
                "allocation_ratio": {"vcpu": _r(agg["vcpu"]["allocated"] / cap.vcpu) if cap else None,
                                     "memory": _r(agg["memory_gib"]["allocated"] / cap.memory_gib) if cap else None,
                                     "storage": _r(agg["storage_gib"]["allocated"] / cap.storage_gib) if cap else None},
                "overcommit_ratio": _r(agg["vcpu"]["allocated"] / cap.physical_cores) if cap else None,
            })  # fmt: skip
            pools.append(agg)
        zones = []
        for z, zname in self.reg.network_zones.items():
            insts = [r["instance"] for r in rows if r["network_zone"] == z]
            zones.append({"network_zone": z, "name": zname, **self._aggregate(insts, data, by_inst)})
        depts = []
        codes = [d.code for d in self.reg.departments] + sorted({r["department"] for r in rows} - {d.code for d in self.reg.departments})
        for code in codes:
            d = self.reg.department(code)
            insts = [r["instance"] for r in rows if r["department"] == code]
            depts.append({"department": code, "name": d.name if d else None, "registered": d is not None,
                          "systems": [{"code": s.code, "name": s.name} for s in (d.systems if d else [])],
                          **self._aggregate(insts, data, by_inst)})  # fmt: skip
        return pools, zones, depts

    def services(self) -> list[dict[str, Any]]:
        """Availability of the platform's own services (up of non-host jobs)."""
        out = []
        for labels, arr in sorted(self.prom.range('up{job!="node"}', self.grid).items()):
            lab = dict(labels)
            v = arr[~np.isnan(arr)]
            out.append({"job": lab.get("job", ""), "instance": lab.get("instance", ""),
                        "availability_pct": _r(100 * float((v == 1).sum()) / len(v), 3) if len(v) else None,
                        "coverage": round(len(v) / self.grid.n, 6)})  # fmt: skip
        return out

    def performance(self) -> dict[str, Any]:
        """API latency p95 and error rate over the month, per route and overall."""
        w = int((min(self.end, self.now) - self.start).total_seconds())
        at = min(self.end, self.now)
        if w <= 0:
            return {"routes": [], "overall": None}
        hist = "govctl_http_request_duration_seconds"
        p95 = {m.get("route", ""): v for m, v in self.prom.instant(f"histogram_quantile(0.95, sum by (route, le) (increase({hist}_bucket[{w}s])))", at)}
        req = {m.get("route", ""): v for m, v in self.prom.instant(f"sum by (route) (increase({hist}_count[{w}s]))", at)}
        err = {m.get("route", ""): v for m, v in self.prom.instant(f"sum by (route) (increase(govctl_http_errors_total[{w}s]))", at)}
        allp = self.prom.instant(f"histogram_quantile(0.95, sum by (le) (increase({hist}_bucket[{w}s])))", at)
        routes = []
        for route in sorted(req):
            n = req[route]
            routes.append({"route": route, "requests": round(n), "p95_ms": _r(p95.get(route, float("nan")) * 1000, 2) if not math.isnan(p95.get(route, float("nan"))) else None,
                           "error_rate": _r(err.get(route, 0.0) / n, 6) if n else None})  # fmt: skip
        total = sum(req.values())
        overall = {"requests": round(total), "p95_ms": _r(allp[0][1] * 1000, 2) if allp and not math.isnan(allp[0][1]) else None,
                   "error_rate": _r(sum(err.values()) / total, 6) if total else None}  # fmt: skip
        return {"routes": sorted(routes, key=lambda r: -r["requests"])[:20], "overall": overall}

    def backups(self) -> dict[str, Any]:
        """Backup runs by source and outcome, real-time RPO percentiles, and restore drills."""
        w = int((min(self.end, self.now) - self.start).total_seconds())
        at = min(self.end, self.now)
        runs: dict[str, dict[str, float]] = {}
        for m, v in self.prom.instant(f"sum by (source, outcome) (increase(govctl_backup_runs_total[{w}s]))", at) if w > 0 else []:
            runs.setdefault(m.get("source", ""), {})[m.get("outcome", "")] = v
        sources = []
        rpo = self.prom.range("govctl_dr_rpo_seconds", self.grid)
        rpo_by = {dict(k).get("source", ""): a for k, a in rpo.items()}
        for src in sorted(set(runs) | set(rpo_by)):
            r = runs.get(src, {})
            ok, failed = r.get("succeeded", 0.0), r.get("failed", 0.0)
            a = rpo_by.get(src)
            v = np.sort(a[~np.isnan(a)]) if a is not None else np.array([])
            sources.append({
                "source": src, "runs": round(ok + failed), "succeeded": round(ok), "failed": round(failed),
                "success_rate": _r(ok / (ok + failed), 6) if ok + failed else None,
                "rpo_p50_s": _r(float(v[max(0, math.ceil(0.5 * len(v)) - 1)]), 1) if len(v) else None,
                "rpo_p99_s": _r(float(v[max(0, math.ceil(0.99 * len(v)) - 1)]), 1) if len(v) else None,
                "rpo_coverage": round(len(v) / self.grid.n, 6),
            })  # fmt: skip
        drills = self._drills()
        return {"sources": sources, "drills": drills, "plans": self._plans(drills)}

    def _plans(self, drills: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each drill plan's systems: drills due this month (by its schedule) against drills done, passed, and signed off."""
        out = []
        for p in self.reg.drill_plans:
            due = p.due(self.start, self.end, SH)
            for key in p.systems:
                _, sysm = self.reg.system(key)
                done = [d for d in drills if d.get("system") == sysm.code]
                passed = [d for d in done if d["status"] == "passed"]
                signed = [d for d in done if p.sign_off in (d.get("approvers") or [])]
                out.append({"plan": p.code, "plan_name": p.name, "system": sysm.code, "system_name": sysm.name, "planned": len(due),
                            "due": [t.isoformat() for t in due], "done": len(done), "passed": len(passed), "signed_off": len(signed),
                            "sign_off": p.sign_off, "participants": p.participants,
                            "met": len(passed) >= len(due)})  # fmt: skip
                if len(passed) < len(due):
                    self.notes.append(f"演练计划“{p.name}”：{sysm.name} 本月应演练 {len(due)} 次，已完成并通过 {len(passed)} 次。")
        return out

    def _drills(self) -> list[dict[str, Any]]:
        from sqlalchemy import inspect, text

        if not inspect(self.rt.engine).has_table("dr_drills"):
            self.notes.append("容灾演练记录尚未启用（灾备模块未部署），演练项为空。")
            return []
        s, e = self.start.astimezone(timezone.utc).isoformat(), self.end.astimezone(timezone.utc).isoformat()
        with self.rt.engine.connect() as c:
            rows = c.execute(text("SELECT id, started, rpo_s, rto_s, status, system, plan, approvers FROM dr_drills "
                                  "WHERE started >= :s AND started < :e ORDER BY started"), {"s": s, "e": e}).all()  # fmt: skip
        return [{"id": r.id, "started": r.started, "rpo_s": r.rpo_s, "rto_s": r.rto_s, "status": r.status, "system": r.system, "plan": r.plan,
                 "approvers": json.loads(r.approvers) if r.approvers else []} for r in rows]  # fmt: skip

    def resources(self) -> list[dict[str, Any]]:
        """Per department: requests made, approved and refused this month, quota use (as built), capacity reclaimed this month."""
        from sqlalchemy import and_, inspect, select

        from sqlalchemy import column, table

        from control_plane.audit.models import records
        from control_plane.gate.models import operations

        # deploy's tables, read by name (the report does not import the deploy domain, which imports monitoring, which imports this)
        allocations = table("deploy_allocations", *(column(n) for n in ("id", "department", "pool", "status", "vcpu", "memory_gib", "storage_gib")))
        quota_overrides = table("deploy_quotas", *(column(n) for n in ("department", "pool", "vcpu", "memory_gib", "storage_gib", "hosts")))

        if not inspect(self.rt.engine).has_table("deploy_allocations"):
            return []
        s = self.start.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        e = self.end.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        dims = ("hosts", "vcpu", "memory_gib", "storage_gib")
        with self.rt.engine.connect() as c:
            ops = c.execute(select(operations.c.operation, operations.c.target, operations.c.status, operations.c.result, operations.c.requester).where(
                and_(operations.c.operation.in_(("resource.request", "resource.return")), operations.c.created >= s, operations.c.created < e))).all()  # fmt: skip
            refused = c.execute(select(records.c.target).where(and_(records.c.operation == "resource.request", records.c.outcome == "refused",
                                                                    records.c.ts >= s, records.c.ts < e))).all()  # fmt: skip
            allocs = [dict(r._mapping) for r in c.execute(select(allocations))]
            overrides = {(r.department, r.pool): {k: int(getattr(r, k)) for k in ("vcpu", "memory_gib", "storage_gib", "hosts")}
                         for r in c.execute(select(quota_overrides))}  # fmt: skip
        dept_of = {a["id"]: a["department"] for a in allocs}
        out = []
        for d in self.reg.departments:
            mine = [o for o in ops if (o.target if o.operation == "resource.request" else dept_of.get(o.target)) == d.code]
            reqs = [o for o in mine if o.operation == "resource.request"]
            reclaimed = dict.fromkeys(dims, 0)
            for o in mine:
                if o.operation == "resource.return" and o.status == "succeeded":
                    freed = (json.loads(o.result) if o.result else {}).get("freed") or {}
                    for k in dims:
                        reclaimed[k] += int(freed.get(k, 0))
            quotas = []
            for pool in sorted(set(d.quotas) | {p for (dc, p) in overrides if dc == d.code}):
                held = [a for a in allocs if a["department"] == d.code and a["pool"] == pool and a["status"] == "active"]
                used = {"hosts": len(held), **{k: sum(int(a[k]) for a in held) for k in dims[1:]}}
                q = overrides.get((d.code, pool)) or d.quotas[pool].model_dump()  # one the bureau set through the gate wins
                quotas.append({"pool": pool, "quota": q, "used": used})
            n_refused = sum(1 for r in refused if r.target == d.code)
            if not (reqs or n_refused or quotas or any(reclaimed.values())):
                continue
            out.append({"department": d.code, "name": d.name, "requests": len(reqs), "approved": sum(1 for o in reqs if o.status == "succeeded"),
                        "rejected": sum(1 for o in reqs if o.status == "rejected"), "pending": sum(1 for o in reqs if o.status == "pending_approval"),
                        "refused": n_refused, "reclaim_requests": sum(1 for o in mine if o.operation == "resource.return" and o.requester == "system:scheduler"),
                        "reclaimed": reclaimed, "quotas": quotas})  # fmt: skip
        return out

    def security(self) -> dict[str, Any]:
        """SOC alerts raised in the month (by severity and verdict) and operations the gate refused or the SOC blocked."""
        from sqlalchemy import func, select

        from control_plane.audit.models import records
        from control_plane.gate.models import operations

        s = self.start.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        e = self.end.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
        out: dict[str, Any] = {"alerts": None, "blocked_operations": 0, "refused_operations": 0, "operations": {}}
        try:
            resp = self.rt.es.search(index="soc-alerts", size=0, ignore_unavailable=True, query={"bool": {
                "filter": [{"range": {"first_seen": {"gte": s, "lt": e}}}], "must_not": [{"terms": {"kind": ["synthetic", "engine_health"]}}]}},
                aggs={"sev": {"terms": {"field": "severity", "size": 10}}, "verdict": {"terms": {"field": "verdict", "size": 10, "missing": "undecided"}},
                      "status": {"terms": {"field": "status", "size": 10}}})  # fmt: skip
            ag = resp.get("aggregations", {})
            out["alerts"] = {"total": resp["hits"]["total"]["value"],
                             "by_severity": {b["key"]: b["doc_count"] for b in ag.get("sev", {}).get("buckets", [])},
                             "by_verdict": {b["key"]: b["doc_count"] for b in ag.get("verdict", {}).get("buckets", [])},
                             "by_status": {b["key"]: b["doc_count"] for b in ag.get("status", {}).get("buckets", [])}}  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - stated in the report, not silently zero
            self.notes.append(f"安全告警数据不可用（Elasticsearch: {type(exc).__name__}），本项未统计。")
        with self.rt.engine.connect() as c:
            refused = c.execute(select(records.c.details).where(records.c.ts >= s, records.c.ts < e, records.c.decision == "deny")).all()
            ops = c.execute(select(operations.c.status, func.count()).where(operations.c.created >= s, operations.c.created < e)
                            .group_by(operations.c.status)).all()  # fmt: skip
            bg = c.execute(select(func.count()).where(operations.c.created >= s, operations.c.created < e, operations.c.break_glass.is_(True))).scalar()
        out["refused_operations"] = len(refused)
        out["blocked_operations"] = sum(1 for (d,) in refused if "blocked by the SOC engine" in (d or ""))
        out["operations"] = {"by_status": {st: n for st, n in ops}, "break_glass": int(bg or 0)}
        return out

    # -- the document ---------------------------------------------------------------------------

    def build(self, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole report document (unsigned)."""
        from control_plane import __version__

        cov = self.coverage()
        meta, data = self.host_series()
        rows = self.hosts(meta, data)
        pools, zones, depts = self.pools(rows, data)
        unattributed = [r["host"] for r in rows if not self.reg.department(r["department"])]
        if unattributed:
            self.notes.append(f"{len(unattributed)} 台主机未归属到登记的部门：{', '.join(unattributed[:10])}。")
        if cov["gap_count"]:
            self.notes.append(f"监测数据有 {cov['gap_count']} 段缺口，覆盖率 {cov['prometheus_pct']:.2f}%；缺失时段不计入统计（不按零计）。")
        doc = {
            "schema": SCHEMA_ID, "month": self.month, "final": self.end <= self.now,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat(), "timezone": "Asia/Shanghai", "step_s": self.grid.step, "points": self.grid.n},
            "platform": {"name": "政务云运维管控平台", "operator": (self.reg.departments[0].name if self.reg.departments else None)},
            "pools": pools, "network_zones": zones, "departments": depts, "hosts": rows,
            "underused": [{"host": r["host"], "pool": r["pool"], "department": r["department"], "vcpu": r["vcpu"],
                           "cpu_mean": r["cpu"]["mean"], "cpu_p95": r["cpu"]["p95"]} for r in rows if r["underused"]],
            "services": self.services(), "performance": self.performance(), "backups": self.backups(), "security": self.security(),
            "resources": self.resources(),
            "coverage": cov,
        }  # fmt: skip
        # the signed head of the audit ledger goes to the province with the report: once its receipt is back, the province
        # holds that head, and nobody on this host can rewrite the history before it unnoticed (an external anchor)
        head = self.rt.ledger.signed_head()
        doc["audit"] = {"head_seq": head["seq"], "head_hash": head["head_hash"], "key_id": head["key_id"],
                        "checkpoint_ts": head.get("ts"), "checkpoint_signature": head.get("signature")}  # fmt: skip
        doc["month_over_month"] = month_over_month(doc, previous)
        doc["notes"] = self.notes
        info = self.prom.build_info()
        doc["provenance"] = {
            "built_at": self.now.isoformat(), "software": {"govctl": __version__, "prometheus": info.get("version")},
            "prometheus_url": self.prom.url, "query_seconds": round(self.prom.seconds, 3), "queries": self.prom.queries,
            "thresholds": {"underused_cpu_mean": self.rt.settings.report.underused_cpu_mean, "underused_cpu_p95": self.rt.settings.report.underused_cpu_p95},
            "statistics": "mean, nearest-rank p95 and peak over the points present; gaps are not zeros",
        }  # fmt: skip
        return json.loads(json.dumps(doc))  # plain JSON types only


def month_over_month(doc: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any] | None:
    """Changes against the previous month's report (latest revision), in percentage points or counts."""
    if not prev:
        return None

    def pool_map(d: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {p["pool"]: p for p in d.get("pools", [])}

    def d(a: float | None, b: float | None, scale: float = 100.0) -> float | None:
        return None if a is None or b is None else round((a - b) * scale, 3)

    cur_p, prev_p = pool_map(doc), pool_map(prev)
    pools = []
    for name, p in cur_p.items():
        q = prev_p.get(name)
        if not q:
            continue
        pools.append({"pool": name,
                      "cpu_mean_pp": d(p["vcpu"]["utilisation"]["mean"], q["vcpu"]["utilisation"]["mean"]),
                      "memory_mean_pp": d(p["memory_gib"]["utilisation"]["mean"], q["memory_gib"]["utilisation"]["mean"]),
                      "storage_mean_pp": d(p["storage_gib"]["utilisation"]["mean"], q["storage_gib"]["utilisation"]["mean"]),
                      "availability_pp": d(p["availability_pct"], q["availability_pct"], 1.0),
                      "vcpu_allocated": d(p["vcpu"]["allocated"], q["vcpu"]["allocated"], 1.0)})  # fmt: skip
    a_cur = (doc.get("security", {}).get("alerts") or {}).get("total")
    a_prev = (prev.get("security", {}).get("alerts") or {}).get("total")
    return {"previous_month": prev.get("month"), "previous_revision": prev.get("revision"), "pools": pools,
            "alerts_total": None if a_cur is None or a_prev is None else a_cur - a_prev,
            "blocked_operations": doc["security"]["blocked_operations"] - prev.get("security", {}).get("blocked_operations", 0)}  # fmt: skip
