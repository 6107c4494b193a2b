"""The SOC engine watches itself; every failure is an ``engine_health`` alert in ``soc-alerts``.

Four checks, run by the ``soc.health`` job:

* **rule_error**: a rule whose last detection run failed (its query, its index, its shards).
* **detection_lag**: a rule whose checkpoint is further behind now than the lag target, or that
  has not run for that long (the scheduler stopped, the job is paused, the leader is gone).
* **mapping_drift**: a field a rule reads that neither the event template nor any event index
  maps any more (a template changed under the rules; the rule would silently never match).
* **coverage**: each run injects one synthetic event per rule (copied from the rule's own test
  file, marked ``govctl.synthetic``) and the next run checks that the rule's alert was raised.
  An event the pipeline swallowed is a finding. Synthetic alerts are kept apart (``kind:
  synthetic``): they never reach an analyst's queue and never trigger a response.

Health alerts are grouped by check and subject, so a persisting problem updates one open alert.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import select

from control_plane import clock
from control_plane import metrics
from control_plane.crypto import sm3_hex
from control_plane.soc.schema import ALERTS_INDEX, EVENTS_PREFIX
from control_plane.soc.models import synthetic  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from control_plane.context import Context

log = logging.getLogger("govctl.soc.health")
CHECKS = ("rule_error", "detection_lag", "mapping_drift", "coverage")

@dataclass
class Finding:
    """One thing wrong with the engine."""

    check: str
    subject: str  # a rule id, or "engine"
    message: str
    severity: str = "high"

    def as_dict(self) -> dict[str, str]:
        """Plain data."""
        return dict(self.__dict__)


_iso = clock.es_iso


def _flat(props: dict[str, Any], pre: str = "") -> tuple[set[str], set[str]]:
    """Field paths of a mapping, and the paths of its ``flattened`` fields (any sub-key is searchable)."""
    fields, flattened = set(), set()
    for k, v in props.items():
        fields.add(pre + k)
        if v.get("type") == "flattened":
            flattened.add(pre + k)
        if "properties" in v:
            f2, fl2 = _flat(v["properties"], pre + k + ".")
            fields |= f2
            flattened |= fl2
    return fields, flattened


def mapped_fields(es: Any) -> tuple[set[str], set[str]]:
    """What the event template and every existing event index map."""
    fields: set[str] = set()
    flattened: set[str] = set()
    try:
        tmpl = es.indices.get_index_template(name="soc-events")["index_templates"][0]["index_template"]
        f, fl = _flat(tmpl.get("template", {}).get("mappings", {}).get("properties", {}))
        fields |= f
        flattened |= fl
    except Exception as exc:  # noqa: BLE001 - a missing template is itself drift: every field is then unmapped
        log.warning("event template unreadable: %s", exc)
    for body in es.indices.get_mapping(index=f"{EVENTS_PREFIX}*", ignore_unavailable=True, allow_no_indices=True).values():
        f, fl = _flat(body.get("mappings", {}).get("properties", {}))
        fields |= f
        flattened |= fl
    return fields, flattened


def check_mapping(es: Any, ruleset: Any) -> list[Finding]:
    """Rules reading fields nothing maps."""
    fields, flattened = mapped_fields(es)
    out = []
    for r in ruleset.rules:
        missing = [f for f in r.fields if f not in fields and not any(f.startswith(fl + ".") for fl in flattened)]
        if missing:
            out.append(Finding("mapping_drift", r.id, f"{r.title}: no event mapping has {', '.join(missing)}; the rule cannot match "
                                                      "(restore the soc-events template or fix the rule)"))  # fmt: skip
    return out


def check_detection(rt: Context, ruleset: Any, now: datetime, lag_target_s: float) -> list[Finding]:
    """Rules that failed, or fell behind, or stopped running."""
    from control_plane.soc.detect import status

    known = {r.id: r.title for r in ruleset.rules} | {c.id: c.title for c in ruleset.correlations}
    out = []
    for st in status(rt):
        title = known.get(st["rule_id"])
        if title is None:
            continue
        if st["last_error"]:
            out.append(Finding("rule_error", st["rule_id"], f"{title}: last run failed: {st['last_error']}"))
        idle = (now - datetime.fromisoformat(st["last_run"].replace("Z", "+00:00"))).total_seconds()
        behind = max(float(st["behind_s"] or 0), idle)
        if behind > lag_target_s:
            out.append(Finding("detection_lag", st["rule_id"], f"{title}: detection is {behind:.0f} s behind (target {lag_target_s:.0f} s)"))
    return out


def _test_event(rules_dir: Path, rule: Any) -> dict[str, Any] | None:
    f = rules_dir / "tests" / f"{rule.path.stem}.yml"
    if not f.is_file():
        return None
    spec = yaml.safe_load(f.read_text()) or {}
    return next((copy.deepcopy(e) for e in spec.get("match") or [] if rule.match(e)), None)


def inject(rt: Context, ruleset: Any, rules_dir: Path, now: datetime) -> int:
    """One synthetic event per alert-raising rule that has test events; returns how many were sent."""
    from control_plane.soc.ingest import Ingestor, doc_id

    skip = ruleset.correlation_only
    events, rows = [], []
    run = uuid.uuid4().hex[:12]
    for r in ruleset.rules:
        if r.id in skip:
            continue
        ev = _test_event(rules_dir, r)
        if ev is None:
            continue
        ev["@timestamp"] = _iso(now)
        ev.setdefault("govctl", {})["synthetic"] = run
        probe = {**ev, "host": {**(ev.get("host") or {}), "name": "govctl-synthetic"}}
        if r.match(probe):  # a host of its own keeps synthetic alerts apart from real ones, if the rule allows
            ev = probe
        events.append(ev)
        rows.append({"event_id": doc_id(ev), "rule_id": r.id, "injected": _iso(now)})
    if not events:
        return 0
    with rt.engine.begin() as conn:  # recorded first: detection trusts an event as synthetic only if its id is here
        conn.execute(synthetic.insert(), rows)
    res = Ingestor(rt.es, rt.settings.var / "soc" / "spool").ingest(events)
    if res.spooled or res.dead_lettered:
        raise RuntimeError(f"synthetic events not indexed: {res.as_dict()}")
    return len(events)


def verify(rt: Context, ruleset: Any, now: datetime, grace_s: float) -> list[Finding]:
    """Synthetic events older than the grace period: did each raise its rule's alert?"""
    titles = {r.id: r.title for r in ruleset.rules}
    cutoff = _iso(now - timedelta(seconds=grace_s))
    with rt.engine.connect() as conn:
        due = conn.execute(select(synthetic).where(synthetic.c.checked.is_(None), synthetic.c.injected <= cutoff)).all()
    if not due:
        return []
    rt.es.indices.refresh(index=ALERTS_INDEX, ignore_unavailable=True)
    found = set()
    ids = [d.event_id for d in due]
    for i in range(0, len(ids), 500):
        resp = rt.es.search(index=ALERTS_INDEX, size=1000, query={"terms": {"event_ids": ids[i : i + 500]}}, source=["event_ids"],
                            ignore_unavailable=True)  # fmt: skip
        for h in resp["hits"]["hits"]:
            found |= set(h["_source"].get("event_ids", []))
    out = []
    with rt.engine.begin() as conn:
        for d in due:
            ok = d.event_id in found
            conn.execute(synthetic.update().where(synthetic.c.event_id == d.event_id).values(checked=_iso(now), ok=ok))
            if not ok and d.rule_id in titles:
                out.append(Finding("coverage", d.rule_id, f"{titles[d.rule_id]}: a synthetic event injected at {d.injected} "
                                                          f"raised no alert within {grace_s:.0f} s"))  # fmt: skip
    return out


def raise_health(es: Any, f: Finding) -> str:
    """Open (or update) the engine-health alert for this check and subject; returns its id."""
    from control_plane.soc.alerts import ensure_index

    ensure_index(es)
    key = f"{f.check}|{f.subject}"
    now = _iso(datetime.now(timezone.utc))
    es.indices.refresh(index=ALERTS_INDEX, ignore_unavailable=True)
    hit = es.search(index=ALERTS_INDEX, size=1, query={"bool": {"filter": [{"term": {"kind": "engine_health"}}, {"term": {"group_key": key}},
                                                                           {"terms": {"status": ["open", "acknowledged"]}}]}})["hits"]["hits"]  # fmt: skip
    if hit:
        doc = hit[0]["_source"]
        doc.update(last_seen=now, count=doc.get("count", 1) + 1, summary=f.message)
        doc["history"] = doc.get("history", []) + [{"ts": now, "actor": "soc-engine", "action": "repeat"}]
        es.index(index=ALERTS_INDEX, id=hit[0]["_id"], document=doc, refresh=True)
        return str(hit[0]["_id"])
    alert_id = sm3_hex(f"health|{key}|{now}".encode())[:24]
    es.index(index=ALERTS_INDEX, id=alert_id, refresh=True, document={
        "@timestamp": now, "kind": "engine_health", "rule": {"id": f"engine-health:{f.check}", "name": f.check, "title": f"SOC engine health: {f.check}"},
        "severity": f.severity, "status": "open", "verdict": None, "assignee": None, "group_key": key, "first_seen": now, "last_seen": now,
        "count": 1, "event_ids": [], "events": [], "shadow": False, "summary": f.message, "notes": [],
        "history": [{"ts": now, "actor": "soc-engine", "action": "raised"}]})  # fmt: skip
    return alert_id


def run(rt: Context, ruleset: Any, rules_dir: Path, *, now: datetime | None = None, lag_target_s: float = 300, grace_s: float = 120,
        synthetic_events: bool = True) -> list[Finding]:  # fmt: skip
    """Every check; each finding raised as an engine-health alert; the per-check gauge set."""
    now = now or datetime.now(timezone.utc)
    findings = check_detection(rt, ruleset, now, lag_target_s) + check_mapping(rt.es, ruleset)
    if synthetic_events:
        findings += verify(rt, ruleset, now, grace_s)
        inject(rt, ruleset, rules_dir, now)
    for f in findings:
        raise_health(rt.es, f)
    for c in CHECKS:
        metrics.SOC_ENGINE_FINDINGS.labels(check=c).set(sum(1 for f in findings if f.check == c))
    return findings
