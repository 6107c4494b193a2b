"""Scheduled detection: every rule searches the window since its own checkpoint.

Windows are on ingestion time (``event.ingested``, set by our ingestion path and the audit mirror
when they send an event, also when a spool is replayed), not on the event's own time: a log file
from yesterday, a shipper's buffer after an outage or a host whose clock drifts is detected when it
arrives, once. Events another writer indexed without ``event.ingested`` are searched by their own
time, as before. Correlations re-evaluate the event-time windows around whatever arrived since
their checkpoint, so a late event completes a burst it belongs to.

Windows are contiguous per rule ([last end, now − settle)), so after a crash, a restart or a late
run nothing is skipped: the missed time is searched on the next run and counted as a filled gap.
Every query sets its size and pages with search_after; a run that hits its alert cap stops at the
last event it handled and the next run continues from there, so falling behind is visible
(``behind_s``) rather than silent. Alerts are idempotent, so re-searching a window raises nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from control_plane import clock
from control_plane import metrics
from control_plane.es import UNREACHABLE
from control_plane.soc.alerts import record_matches
from control_plane.soc.exceptions import active, excepted
from control_plane.soc.schema import EVENTS_PREFIX
from control_plane.soc.models import rule_state, synthetic

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.soc")
PAGE = 500
SETTLE_S = 2.0  # events younger than this may not be searchable yet (refresh interval)

_iso = clock.es_iso


@dataclass
class DetectionRun:
    """What one detection pass did."""

    rules: int = 0
    events: int = 0
    created: int = 0
    updated: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    capped: list[str] = field(default_factory=list)
    excepted: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dict(self.__dict__)


def _state(rt: Context, rule_id: str) -> Any:
    with rt.engine.connect() as conn:
        return conn.execute(select(rule_state).where(rule_state.c.rule_id == rule_id)).first()


def _save(rt: Context, rule_id: str, **vals: Any) -> None:
    with rt.engine.begin() as conn:
        n = conn.execute(rule_state.update().where(rule_state.c.rule_id == rule_id).values(**vals)).rowcount
        if not n:
            conn.execute(rule_state.insert().values(rule_id=rule_id, **{"last_error": "", "behind_s": 0.0, "gaps_filled": 0, **vals}))


def run(rt: Context, ruleset: Any, *, now: datetime | None = None, lookback_s: float = 300, max_alerts: int = 1000,
        interval_s: float = 30, settle_s: float = SETTLE_S) -> DetectionRun:  # fmt: skip
    """One detection pass over every rule: what arrived since each rule's checkpoint, up to ``now − settle_s``."""
    es = rt.es
    now = now or datetime.now(timezone.utc)
    end = now - timedelta(seconds=settle_s)
    res = DetectionRun(rules=len(ruleset.rules))
    budget = max_alerts
    skip = ruleset.correlation_only
    excs = active(rt, ttl_s=0)
    for rule in ruleset.rules:
        if rule.id in skip:
            continue  # feeds a correlation only (generate: false)
        st = _state(rt, rule.id)
        start = datetime.fromisoformat(st.last_end.replace("Z", "+00:00")) if st else end - timedelta(seconds=lookback_s)
        if start >= end:
            continue
        gap = st is not None and (end - start).total_seconds() > 2 * interval_s
        try:
            hits, stop_at = _search(es, rule, start, end, budget)
        except UNREACHABLE as exc:
            res.errors[rule.id] = f"Elasticsearch unreachable ({type(exc).__name__})"
            _save(rt, rule.id, last_end=_iso(start), last_run=_iso(now), last_error=res.errors[rule.id], behind_s=(now - start).total_seconds())
            continue
        except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others; it is reported
            res.errors[rule.id] = f"{type(exc).__name__}: {exc}"[:500]
            log.error("rule %s failed: %s", rule.path.stem, res.errors[rule.id])
            _save(rt, rule.id, last_end=_iso(start), last_run=_iso(now), last_error=res.errors[rule.id], behind_s=(now - start).total_seconds())
            metrics.SOC_RULE_ERRORS.labels(rule=rule.id).inc()
            continue
        c = raise_alerts(rt, es, rule, hits, excs, res)
        budget -= c
        new_end = stop_at or end
        if stop_at:
            res.capped.append(rule.id)
        _save(rt, rule.id, last_end=_iso(new_end), last_run=_iso(now), last_error="", behind_s=max(0.0, (now - new_end).total_seconds()),
              gaps_filled=(st.gaps_filled if st else 0) + (1 if gap else 0))  # fmt: skip
        metrics.SOC_DETECTION_LAG.labels(rule=rule.id).set(max(0.0, (now - new_end).total_seconds()))
    for corr in getattr(ruleset, "correlations", []):
        _run_correlation(rt, es, corr, now, end, res, excs)
    return res


def engine_synthetic_ids(rt: Context, ids: list[str]) -> set[str]:
    """Which of these event ids the engine's self-check injected (recorded in the state DB when it sent them)."""
    from sqlalchemy import select


    with rt.engine.connect() as conn:
        return {r[0] for r in conn.execute(select(synthetic.c.event_id).where(synthetic.c.event_id.in_(ids)))}


def raise_alerts(rt: Context, es: Any, rule: Any, hits: list[dict[str, Any]], excs: list[dict[str, Any]], res: DetectionRun) -> int:
    """Matches minus excepted events into alerts; responses requested for new alerts. Returns alerts created."""
    kept = [h for h in hits if not excepted(excs, rule.id, h["_source"])]
    res.excepted += len(hits) - len(kept)
    claimed = [h for h in kept if (h["_source"].get("govctl") or {}).get("synthetic")]
    # only events the engine injected itself (their ids are in its own table) are coverage probes; anyone else's
    # "synthetic" marker is ignored, so it can neither hide an alert nor suppress a response
    genuine = engine_synthetic_ids(rt, [h["_id"] for h in claimed]) if claimed else set()
    probes = [h for h in claimed if h["_id"] in genuine]
    if probes:  # the engine's own coverage events: alerted apart, never answered with a playbook
        record_matches(es, rule, probes, synthetic=True)
        kept = [h for h in kept if h not in probes]
    new_ids: list[str] = []
    c, u = record_matches(es, rule, kept, new_ids) if kept else (0, 0)
    if new_ids and rule.ours.response and rule.ours.mode == "enforce":
        from control_plane.soc.respond import request

        for alert_id in new_ids:
            request(rt, rule, alert_id)
    res.events += len(kept)
    res.created, res.updated = res.created + c, res.updated + u
    return c


def _run_correlation(rt: Context, es: Any, corr: Any, now: datetime, end: datetime, res: DetectionRun, excs: list[dict[str, Any]]) -> None:
    from control_plane.soc.correlate import evaluate_window

    st = _state(rt, corr.id)
    last = datetime.fromisoformat(st.last_end.replace("Z", "+00:00")) if st else end - timedelta(seconds=corr.timespan_s)
    try:
        for w_start, w_end in arrival_windows(es, corr, last, end):
            for _key, hits in evaluate_window(es, corr, w_start, w_end):
                if any(excepted(excs, corr.id, h["_source"]) for h in hits[:1]):
                    res.excepted += len(hits)
                    continue
                new_ids: list[str] = []
                c, u = record_matches(es, corr, hits, new_ids)
                if new_ids and corr.ours.response and corr.ours.mode == "enforce":
                    from control_plane.soc.respond import request

                    for alert_id in new_ids:
                        request(rt, corr, alert_id)
                res.events += len(hits)
                res.created, res.updated = res.created + c, res.updated + u
    except UNREACHABLE as exc:
        res.errors[corr.id] = f"Elasticsearch unreachable ({type(exc).__name__})"
        return
    except Exception as exc:  # noqa: BLE001 - reported, the others go on
        res.errors[corr.id] = f"{type(exc).__name__}: {exc}"[:500]
        _save(rt, corr.id, last_end=st.last_end if st else _iso(end), last_run=_iso(now), last_error=res.errors[corr.id])
        return
    _save(rt, corr.id, last_end=_iso(end), last_run=_iso(now), last_error="", behind_s=0.0)


def arrived(start: datetime, end: datetime) -> dict[str, Any]:
    """Events that arrived in [start, end): by ``event.ingested``, or by their own time where no ingestion time was written."""
    rng = {"gte": _iso(start), "lt": _iso(end)}
    return {"bool": {"should": [{"range": {"event.ingested": rng}},
                                {"bool": {"must_not": [{"exists": {"field": "event.ingested"}}], "filter": [{"range": {"@timestamp": rng}}]}}],
                     "minimum_should_match": 1}}  # fmt: skip


def arrival_windows(es: Any, corr: Any, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The event-time windows a correlation must look at again because events of its rules arrived in [start, end).

    Arrivals are bucketed by their own time in half-timespan steps; every window (half-overlapping,
    as the regular sweep) that holds a bucket is evaluated, so a burst is seen whole however late
    its parts came. Alerts are idempotent, so a window evaluated twice raises nothing twice.
    """
    from control_plane.soc.correlate import _check_shards

    step = max(1, corr.timespan_s // 2)
    should = [{"query_string": {"query": r.query, "analyze_wildcard": True}} for r in corr.rules]
    query = {"bool": {"filter": [arrived(start, end)], "should": should, "minimum_should_match": 1}}
    resp = es.search(index=f"{EVENTS_PREFIX}*", size=0, query=query, ignore_unavailable=True, allow_no_indices=True,
                     aggs={"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{step}s", "min_doc_count": 1}}})  # fmt: skip
    _check_shards(resp)
    span, half = timedelta(seconds=corr.timespan_s), timedelta(seconds=step)
    ends: set[datetime] = set()
    for b in resp.get("aggregations", {}).get("t", {}).get("buckets", []):
        k = datetime.fromtimestamp(b["key"] / 1000, tz=timezone.utc)
        t = k + half
        while t - span < k + half:  # every window [t - span, t) that overlaps the bucket [k, k + step)
            ends.add(t)
            t += half
    return [(t - span, t) for t in sorted(ends)]


def _search(es: Any, rule: Any, start: datetime, end: datetime, budget: int) -> tuple[list[dict[str, Any]], datetime | None]:
    """All matches that arrived in [start, end), paged; if the alert budget is spent, stop and say where."""
    query = {"bool": {"filter": [arrived(start, end), {"query_string": {"query": rule.query, "analyze_wildcard": True}}]}}
    hits: list[dict[str, Any]] = []
    after = None
    while True:
        kw: dict[str, Any] = {"search_after": after} if after else {}
        # every daily index: a late event sits in the index of its own (old) day
        resp = es.search(index=f"{EVENTS_PREFIX}*", size=PAGE, query=query, sort=[{"event.ingested": {"order": "asc", "missing": "_first"}},
                         {"@timestamp": "asc"}], track_total_hits=False, ignore_unavailable=True, allow_no_indices=True, **kw)  # fmt: skip
        shards = resp.get("_shards", {})
        if shards.get("failed"):  # a 200 with failed shards is a partial answer: never take it as "no matches"
            reason = (shards.get("failures") or [{}])[0].get("reason", {})
            raise RuntimeError(f"{shards['failed']} of {shards.get('total')} shards failed: {reason.get('type')}: {reason.get('reason')}"[:400])
        page = resp["hits"]["hits"]
        hits.extend(page)
        if len(page) < PAGE:
            return hits, None
        if budget <= 0 or len(hits) >= max(budget, 1) * 100:
            last = _arrival(page[-1])
            cut = datetime.fromisoformat(last.replace("Z", "+00:00"))
            return [h for h in hits if _arrival(h) < last], cut
        after = page[-1]["sort"]


def _arrival(hit: dict[str, Any]) -> str:
    src = hit["_source"]
    return clock.es_iso(clock.parse((src.get("event") or {}).get("ingested") or src["@timestamp"]))


def status(rt: Context) -> list[dict[str, Any]]:
    """Each rule's checkpoint, lag, last error and filled gaps."""
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(rule_state).order_by(rule_state.c.rule_id))]
