"""The streaming path: a matching event raises its alert within about a second of being indexed.

Scheduled detection (``soc.detect``) is the complete path: per-rule checkpoints, gap filling,
paging. This is the fast path beside it. Every ``poll_s`` one search asks Elasticsearch for the
events of the last ``horizon_s`` seconds that match *any* enforced single-event rule, each rule
a named query, so the answer says which rules matched which event. Events already handled are
remembered (bounded), and alerts are idempotent, so the two paths never raise an alert twice.

What the fast path cannot see (events older than the horizon, e.g. a replayed spool, or more
than ``max_events`` matches in one poll) is left to scheduled detection and counted in
``govctl_soc_stream_overflow_total``: late, never lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from control_plane import metrics
from control_plane.es import UNREACHABLE, ApiError
from control_plane.soc.schema import indices_between

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.soc.stream")


class StreamDetector:
    """One search per poll for all rules; new matches become alerts at once."""

    def __init__(self, rt: Context, ruleset: Any, *, poll_s: float = 0.25, horizon_s: float = 60.0, max_events: int = 1000,
                 remember: int = 100_000) -> None:  # fmt: skip
        skip = ruleset.correlation_only
        self.rules = {r.id: r for r in ruleset.rules if r.id not in skip}
        self.rt = rt
        self.poll_s = poll_s
        self.horizon_s = horizon_s
        self.max_events = max_events
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._remember = remember
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def query(self, now: datetime) -> tuple[str, dict[str, Any]]:
        """The index list and query for one poll."""
        start = now - timedelta(seconds=self.horizon_s)
        should = [{"query_string": {"query": r.query, "analyze_wildcard": True, "_name": rid}} for rid, r in self.rules.items()]
        return indices_between(start, now + timedelta(seconds=60)), {
            "bool": {"filter": [{"range": {"@timestamp": {"gte": start.isoformat().replace("+00:00", "Z")}}},
                                {"bool": {"should": should, "minimum_should_match": 1}}]}}  # fmt: skip

    def tick(self, now: datetime | None = None) -> int:
        """One poll; returns the number of alerts created."""
        from control_plane.soc.detect import DetectionRun, raise_alerts
        from control_plane.soc.exceptions import active

        if not self.rules:
            return 0
        now = now or datetime.now(timezone.utc)
        index, query = self.query(now)
        es = self.rt.es
        resp = es.search(index=index, size=self.max_events, query=query, sort=[{"@timestamp": "desc"}], track_total_hits=self.max_events + 1,
                         ignore_unavailable=True, allow_no_indices=True, request_cache=False)  # fmt: skip
        hits = resp["hits"]["hits"]
        total = resp["hits"].get("total", {}).get("value", len(hits))
        if total > len(hits):
            metrics.SOC_STREAM_OVERFLOW.inc(total - len(hits))
        fresh = [h for h in hits if (h["_index"], h["_id"]) not in self._seen]
        if not fresh:
            return 0
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for h in reversed(fresh):  # oldest first, as scheduled detection folds them
            for rid in h.get("matched_queries") or []:
                if rid in self.rules:
                    by_rule.setdefault(rid, []).append(h)
        res = DetectionRun(rules=len(by_rule))
        excs = active(self.rt) if by_rule else []
        for rid, rule_hits in by_rule.items():
            raise_alerts(self.rt, es, self.rules[rid], rule_hits, excs, res)
        for h in fresh:  # remembered only once its alerts are written: a failure above retries next poll
            self._seen[(h["_index"], h["_id"])] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        metrics.SOC_STREAM_EVENTS.inc(sum(len(v) for v in by_rule.values()))
        return res.created

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            before = self.last_error
            try:
                self.tick()
                self.last_error = None
                if before:
                    log.info("streaming detection running again")
            except UNREACHABLE as exc:
                self.last_error = f"Elasticsearch unreachable ({type(exc).__name__})"
            except ApiError as exc:  # 503 while the node is still bringing its indices up: wait, say so once
                self.last_error = ("Elasticsearch is still initialising its indices" if exc.meta.status == 503
                                   else f"Elasticsearch refused the poll (HTTP {exc.meta.status}: {exc.message})")[:300]  # fmt: skip
                if self.last_error != before:
                    log.warning("streaming detection waits: %s", self.last_error)
            except Exception as exc:  # noqa: BLE001 - the fast path must survive; scheduled detection covers the gap
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self.last_error != before:  # one traceback per new error, not one per poll
                    log.exception("streaming detection poll failed")
            metrics.SOC_STREAM_UP.set(0 if self.last_error else 1)
            self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - t0)))

    def start(self) -> StreamDetector:
        """Run polls in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self._loop, name="govctl-soc-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling (waits for the current poll)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
