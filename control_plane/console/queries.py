"""The alert queue and the event search the console runs against Elasticsearch (values from the page are typed before use)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from control_plane.errors import GovctlError

if TYPE_CHECKING:
    from control_plane.context import Context

EVENTS = "soc-events-*"
SINCE = re.compile(r"^(\d{1,4})([mhd])$")
FIELD_FILTER = re.compile(r"^([a-z@][a-z0-9_.@]{0,127}):(.{1,512})$")
INDEX = re.compile(r"^(soc-events-\d{4}\.\d{2}\.\d{2}|soc-deadletter)$")


class QueryError(GovctlError):
    """A search the page cannot run as given."""

    http_status = 400


def since_iso(since: str) -> str:
    """``15m``, ``24h``, ``7d`` → the ISO time that far back."""
    m = SINCE.fullmatch(since.strip())
    if m is None:
        raise QueryError(f"时间范围 {since!r} 无法识别 / time range {since!r} not understood", hint="e.g. 15m, 24h or 7d")
    n, unit = int(m.group(1)), m.group(2)
    delta = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]
    return (datetime.now(timezone.utc) - delta).isoformat()


def alert_queue(ctx: Context, *, status: str | None, severity: str | None, rule: str | None, limit: int) -> dict[str, Any]:
    """Alerts newest first (open and acknowledged unless a status is asked for), their groups by rule, and counts."""
    from control_plane.soc import alerts

    for name, v, allowed in (("status", status, ("open", "acknowledged", "closed")), ("severity", severity, ("critical", "high", "medium", "low", "informational"))):
        if v and v not in allowed:
            raise QueryError(f"{name} {v!r} is not one of {', '.join(allowed)}")
    rows = alerts.search(ctx.es, status=status, severity=severity, rule=rule, limit=limit)
    if not status:
        rows = [a for a in rows if a.get("status") != "closed"]
    groups: dict[str, dict[str, Any]] = {}
    for a in rows:
        rid = a.get("rule", {}).get("id", "?")
        g = groups.setdefault(rid, {"rule": a.get("rule", {}), "severity": a.get("severity"), "alerts": 0, "events": 0, "first_seen": a.get("first_seen"),
                                    "last_seen": a.get("last_seen")})  # fmt: skip
        g["alerts"] += 1
        g["events"] += int(a.get("count") or 1)
        g["first_seen"] = min(filter(None, [g["first_seen"], a.get("first_seen")]), default=None)
        g["last_seen"] = max(filter(None, [g["last_seen"], a.get("last_seen")]), default=None)
    by_sev: dict[str, int] = {}
    for a in rows:
        by_sev[a.get("severity", "?")] = by_sev.get(a.get("severity", "?"), 0) + 1
    return {"alerts": rows, "groups": sorted(groups.values(), key=lambda g: g["last_seen"] or "", reverse=True), "by_severity": by_sev}


def event_search(ctx: Context, q: str, since: str, fields: list[str], size: int) -> dict[str, Any]:
    """Events matching a query-string query and field filters in a time range, with a histogram and field counts."""
    start = since_iso(since)
    filters: list[dict[str, Any]] = [{"range": {"@timestamp": {"gte": start}}}]
    for f in fields[:16]:
        m = FIELD_FILTER.fullmatch(f)
        if m is None:
            raise QueryError(f"字段过滤 {f!r} 格式应为 field:value / a field filter is field:value", hint="e.g. user.name:alice")
        filters.append({"term": {m.group(1): m.group(2)}})
    must: list[dict[str, Any]] = []
    if q.strip():
        if len(q) > 2000:
            raise QueryError("查询过长 / the query is longer than 2000 characters")
        # Lucene query syntax as Kibana's; leading wildcards off (they scan every term), bad syntax is an error, not everything
        must.append({"query_string": {"query": q, "allow_leading_wildcard": False, "default_operator": "AND", "lenient": True}})
    span = datetime.now(timezone.utc) - datetime.fromisoformat(start)
    interval = "1m" if span <= timedelta(hours=2) else "30m" if span <= timedelta(days=2) else "3h" if span <= timedelta(days=14) else "1d"
    try:
        res = ctx.es.search(index=EVENTS, size=size, ignore_unavailable=True, allow_no_indices=True, track_total_hits=True,
                            query={"bool": {"filter": filters, "must": must}}, sort=[{"@timestamp": "desc"}],
                            aggs={"hist": {"date_histogram": {"field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0,
                                                              "extended_bounds": {"min": start, "max": datetime.now(timezone.utc).isoformat()}}},
                                  **{k: {"terms": {"field": k, "size": 8}} for k in ("event.action", "user.name", "host.name", "source.ip", "event.outcome")}})  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - Elasticsearch's BadRequestError: say what it disliked
        info = getattr(exc, "info", None) or {}
        reason = (((info.get("error") or {}).get("root_cause") or [{}])[0].get("reason")) if isinstance(info, dict) else None
        if getattr(exc, "status_code", None) == 400 or getattr(exc, "meta", None) is not None and getattr(exc.meta, "status", 0) == 400:
            raise QueryError(f"查询语句有误 / the query is not valid: {reason or exc}", hint='Lucene syntax, e.g. user.name:alice AND event.outcome:failure') from None
        raise
    aggs = res.get("aggregations", {})
    return {"total": res["hits"]["total"]["value"], "hits": [{"index": h["_index"], "id": h["_id"], **h["_source"]} for h in res["hits"]["hits"]],
            "histogram": [[b["key_as_string"], b["doc_count"]] for b in aggs.get("hist", {}).get("buckets", [])],
            "facets": {k: [(b["key"], b["doc_count"]) for b in v.get("buckets", [])] for k, v in aggs.items() if k != "hist"}, "interval": interval}  # fmt: skip


def event_doc(ctx: Context, index: str, doc_id: str) -> dict[str, Any]:
    """One event document."""
    if not INDEX.fullmatch(index) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", doc_id):
        raise QueryError("no such event", hint="open events from the search results")
    from elasticsearch import NotFoundError

    try:
        d = ctx.es.get(index=index, id=doc_id)
    except NotFoundError:
        raise QueryError(f"没有事件 {doc_id} / no event {doc_id} in {index}") from None
    return {"index": index, "id": doc_id, "source": d["_source"]}
