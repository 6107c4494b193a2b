"""Sigma correlation rules on the x-pack-free node: core aggregations only, conditions checked here.

For a window [t − timespan, t): the events of the referenced rules, grouped by the group-by
fields with a paged ``composite`` aggregation; per group a ``filters`` sub-aggregation (one
filter per referenced rule, each with min/max @timestamp) and, for value_count, a ``cardinality``.
No painless here, so bucket selection is done in Python. ``temporal_ordered`` candidates
(all rules present, first of the first before last of the last) are confirmed exactly by fetching
their events and checking the order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from control_plane import clock
from control_plane.soc.schema import indices_between

COMPOSITE_PAGE = 500
EVENTS_PER_GROUP = 200


_iso = clock.es_iso


def _check_shards(resp: dict[str, Any]) -> None:
    sh = resp.get("_shards", {})
    if sh.get("failed"):
        reason = (sh.get("failures") or [{}])[0].get("reason", {})
        raise RuntimeError(f"{sh['failed']} shards failed: {reason.get('type')}: {reason.get('reason')}"[:400])


def evaluate_window(es: Any, corr: Any, start: datetime, end: datetime, index: str | None = None) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Groups that satisfy the correlation in [start, end), each with the events that made it."""
    index = index or indices_between(start, end)
    filters = {f"r{i}": {"query_string": {"query": r.query, "analyze_wildcard": True}} for i, r in enumerate(corr.rules)}
    query = {"bool": {"filter": [{"range": {"@timestamp": {"gte": _iso(start), "lt": _iso(end)}}}],
                      "should": list(filters.values()), "minimum_should_match": 1}}  # fmt: skip
    sub: dict[str, Any] = {"by_rule": {"filters": {"filters": filters},
                                       "aggs": {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}}}  # fmt: skip
    if corr.type == "value_count" and corr.field:
        sub["distinct"] = {"cardinality": {"field": corr.field}}
    sources = [{f"g{i}": {"terms": {"field": f}}} for i, f in enumerate(corr.group_by)] or [{"g0": {"terms": {"field": "event.module"}}}]
    fields = corr.group_by or ["event.module"]
    out = []
    after = None
    while True:
        comp: dict[str, Any] = {"size": COMPOSITE_PAGE, "sources": sources}
        if after:
            comp["after"] = after
        resp = es.search(index=index, size=0, query=query, aggs={"groups": {"composite": comp, "aggs": sub}},
                         ignore_unavailable=True, allow_no_indices=True)  # fmt: skip
        _check_shards(resp)
        agg = resp.get("aggregations", {}).get("groups", {})
        for b in agg.get("buckets", []):
            key = {fields[int(k[1:])]: v for k, v in b["key"].items()}
            per = b["by_rule"]["buckets"]
            counts = [per[f"r{i}"]["doc_count"] for i in range(len(corr.rules))]
            if corr.type == "event_count":
                ok = corr.holds(b["doc_count"])
            elif corr.type == "value_count":
                ok = corr.holds(b["distinct"]["value"])
            elif corr.type == "temporal":
                ok = corr.holds(sum(1 for c in counts if c > 0))
            else:  # temporal_ordered
                ok = all(counts) and per["r0"]["first"]["value"] < per[f"r{len(counts) - 1}"]["last"]["value"]
            if ok:
                events = _group_events(es, corr, key, start, end, index)
                if corr.type == "temporal_ordered":
                    events = _ordered(corr, events)
                    if not events:
                        continue
                out.append((key, events))
        after = agg.get("after_key")
        if not after or len(agg.get("buckets", [])) < COMPOSITE_PAGE:
            return out


def _group_events(es: Any, corr: Any, key: dict[str, Any], start: datetime, end: datetime, index: str) -> list[dict[str, Any]]:
    """The group's matching events in time order (hits carry which rule matched in ``matched_queries``)."""
    should = [{"query_string": {"query": r.query, "analyze_wildcard": True, "_name": f"r{i}"}} for i, r in enumerate(corr.rules)]
    flt = [{"range": {"@timestamp": {"gte": _iso(start), "lt": _iso(end)}}}] + [{"term": {f: v}} for f, v in key.items() if f != "event.module" or corr.group_by]
    resp = es.search(index=index, size=EVENTS_PER_GROUP, sort=[{"@timestamp": "asc"}], ignore_unavailable=True,
                     query={"bool": {"filter": flt, "should": should, "minimum_should_match": 1}})  # fmt: skip
    _check_shards(resp)
    return resp["hits"]["hits"]


def _ordered(corr: Any, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earliest chain of events matching the rules in order, or [] if there is none."""
    chain, step = [], 0
    for h in hits:
        if f"r{step}" in (h.get("matched_queries") or []):
            chain.append(h)
            step += 1
            if step == len(corr.rules):
                return chain
    return []


def windows(last_end: datetime | None, end: datetime, timespan_s: int, max_windows: int = 200) -> list[tuple[datetime, datetime]]:
    """Overlapping windows (half-timespan steps) from the checkpoint to now, so downtime skips nothing."""
    span = timedelta(seconds=timespan_s)
    step = span / 2
    t = (last_end or end) + step if last_end else end
    out = []
    while t < end and len(out) < max_windows:
        out.append((t - span, t))
        t += step
    out.append((end - span, end))
    return out


def evaluate_events(corr: Any, events: list[dict[str, Any]], start: datetime, end: datetime) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The same decision as ``evaluate_window``, made in process over a list of events (the rules' test cases check both agree).

    An event counts if its own time is in [start, end) and a referenced rule matches it; groups are
    the group-by fields' values (an event missing one is in no group, as in a ``composite``
    aggregation); the condition is checked exactly as for Elasticsearch's answer.
    """
    from control_plane.soc.matcher import get_field

    fields = corr.group_by or ["event.module"]
    groups: dict[tuple[str, ...], list[tuple[datetime, int, dict[str, Any]]]] = {}
    for ev in events:
        t = clock.parse(str(ev.get("@timestamp")))
        if not start <= t < end:
            continue
        hit = [i for i, r in enumerate(corr.rules) if r.match(ev)]
        if not hit:
            continue
        key = tuple(get_field(ev, f) for f in fields)
        if any(not isinstance(v, (str, int, float)) for v in key):
            continue
        for i in hit:
            groups.setdefault(tuple(str(v).lower() for v in key), []).append((t, i, ev))
    out = []
    for key, rows in groups.items():
        rows.sort(key=lambda r: r[0])
        docs = list({id(ev): ev for _, _, ev in rows}.values())
        present = {i for _, i, _ in rows}
        if corr.type == "event_count":
            ok = corr.holds(len(docs))
        elif corr.type == "value_count":
            ok = corr.holds(len({str(get_field(ev, corr.field)).lower() for ev in docs if get_field(ev, corr.field) is not None}))
        elif corr.type == "temporal":
            ok = corr.holds(len(present))
        else:  # temporal_ordered: each rule's event after the previous one's, in time order
            step = 0
            for _, i, _ in rows:
                if i == step:
                    step += 1
                    if step == len(corr.rules):
                        break
            ok = step == len(corr.rules)
        if ok:
            out.append((dict(zip(fields, key)), docs))
    return out
