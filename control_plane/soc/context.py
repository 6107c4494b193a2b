"""Correlation context for inline decisions, read from Elasticsearch.

A correlation rule whose group-by fields are all known for an operation (the actor, the source
address) can be asked about that group *now*: "has this actor been refused five times in the
last ten minutes?". All applicable rules are answered by one search (``size: 0``, one ``filter``
aggregation per rule with the same sub-aggregations as scheduled detection), so the cost is one
round trip whatever the number of rules.

``temporal_ordered`` is decided from the first event of the first rule and the last event of the
last rule: exact for two rules, a superset check for longer chains (scheduled detection confirms
the order exactly and raises the alert).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from control_plane.es import UNREACHABLE, ApiError
from control_plane.soc.schema import indices_between


def _source_ip(op: Any) -> str | None:
    s = op.source or ""
    return s if s[:1].isdigit() or ":" in s else None


CONTEXT_FIELDS: dict[str, Callable[[Any], str | None]] = {
    "user.name": lambda op: op.actor or None,
    "source.ip": _source_ip,
    "source.address": lambda op: op.source or None,
}


class ContextUnavailable(Exception):
    """Elasticsearch could not answer; the caller degrades and says so."""


@dataclass
class ContextHit:
    """A correlation that holds for the operation's group, with the measured value."""

    rule: Any
    value: float
    group: dict[str, str]


class ContextRules:
    """The correlation rules usable as inline context, and the one search that answers them."""

    def __init__(self, correlations: list[Any], es: Callable[[], Any], *, index: str | None = None) -> None:
        self.rules = [c for c in correlations if c.group_by and all(f in CONTEXT_FIELDS for f in c.group_by)]
        self._es = es
        self.index = index  # None: the daily indices the longest window touches
        self.span_s = max((c.timespan_s for c in self.rules), default=0)

    @property
    def block_capable(self) -> list[Any]:
        """Enforced context rules whose action is block: unanswerable, they become require_approval."""
        return [c for c in self.rules if c.ours.action == "block" and c.ours.mode == "enforce"]

    def body(self, op: Any) -> tuple[dict[str, Any], dict[str, Any], list[tuple[Any, dict[str, str]]]] | None:
        """The query and aggregations for ``op``, and which rule each aggregation answers."""
        aggs: dict[str, Any] = {}
        shoulds: list[dict[str, Any]] = []
        asked: list[tuple[Any, dict[str, str]]] = []
        for c in self.rules:
            group = {f: CONTEXT_FIELDS[f](op) for f in c.group_by}
            if any(v is None for v in group.values()):
                continue
            flt = {"bool": {"filter": [{"range": {"@timestamp": {"gte": f"now-{c.timespan_s}s"}}}] + [{"term": {f: v}} for f, v in group.items()],
                            "should": [{"query_string": {"query": r.query, "analyze_wildcard": True}} for r in c.rules], "minimum_should_match": 1}}  # fmt: skip
            sub: dict[str, Any] = {}
            if c.type in ("temporal", "temporal_ordered"):
                sub["by_rule"] = {"filters": {"filters": {f"r{i}": {"query_string": {"query": r.query, "analyze_wildcard": True}} for i, r in enumerate(c.rules)}},
                                  "aggs": {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}}  # fmt: skip
            if c.type == "value_count" and c.field:
                sub["distinct"] = {"cardinality": {"field": c.field}}
            aggs[f"c{len(asked)}"] = {"filter": flt, **({"aggs": sub} if sub else {})}
            shoulds.append(flt)
            asked.append((c, group))
        if not asked:
            return None
        # filter context: nothing is scored, and Elasticsearch may cache the clauses per segment
        return {"bool": {"filter": [{"bool": {"should": shoulds, "minimum_should_match": 1}}]}}, aggs, asked

    def hits(self, op: Any) -> list[ContextHit]:
        """The correlations that hold for this operation's actor and source right now."""
        built = self.body(op)
        if built is None:
            return []
        query, aggs, asked = built
        now = datetime.now(timezone.utc)
        index = self.index or indices_between(now - timedelta(seconds=self.span_s + 60), now + timedelta(seconds=60))
        try:
            resp = self._es().search(index=index, size=0, query=query, aggs=aggs, track_total_hits=False,
                                     ignore_unavailable=True, allow_no_indices=True, request_cache=False)  # fmt: skip
        except UNREACHABLE as exc:
            raise ContextUnavailable(f"Elasticsearch unreachable ({type(exc).__name__})") from None
        except ApiError as exc:
            raise ContextUnavailable(f"Elasticsearch refused the context query ({exc.meta.status}: {str(exc)[:200]})") from None
        if resp.get("_shards", {}).get("failed"):
            raise ContextUnavailable(f"{resp['_shards']['failed']} shards failed answering the context query")
        out = []
        for i, (c, group) in enumerate(asked):
            b = resp.get("aggregations", {}).get(f"c{i}", {})
            if c.type == "event_count":
                value = float(b.get("doc_count", 0))
            elif c.type == "value_count":
                value = float(b.get("distinct", {}).get("value", 0))
            else:
                per = b.get("by_rule", {}).get("buckets", {})
                counts = [per.get(f"r{k}", {}).get("doc_count", 0) for k in range(len(c.rules))]
                if c.type == "temporal":
                    value = float(sum(1 for n in counts if n))
                else:
                    first = per.get("r0", {}).get("first", {}).get("value")
                    last = per.get(f"r{len(c.rules) - 1}", {}).get("last", {}).get("value")
                    ok = all(counts) and first is not None and last is not None and first < last
                    if ok:
                        out.append(ContextHit(c, float(len(c.rules)), group))
                    continue
            if c.holds(value):
                out.append(ContextHit(c, value, group))
        return out
