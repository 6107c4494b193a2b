"""Alerts in the ``soc-alerts`` index: one per rule and group, updated while repeats stay within the
rule's suppression window; status open → acknowledged → closed with a verdict; every change has a
history entry (and, through the gate, an audit record)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError

from control_plane import clock
from control_plane.crypto import sm3_hex
from control_plane.errors import GovctlError
from control_plane.soc.schema import ALERTS_INDEX
from control_plane.es import REPLICAS, UNREACHABLE, ApiError
from control_plane.gate.decision import AlertRef

MAX_EVENT_IDS = 1000
SNAPSHOT_EVENTS = 5
STATUSES = ("open", "acknowledged", "closed")
VERDICTS = ("true_positive", "false_positive", "benign")

ALERT_MAPPINGS: dict[str, Any] = {
    "properties": {
        "@timestamp": {"type": "date"}, "first_seen": {"type": "date"}, "last_seen": {"type": "date"},
        "rule": {"properties": {"id": {"type": "keyword"}, "name": {"type": "keyword"}, "title": {"type": "text"}}},
        "severity": {"type": "keyword"}, "status": {"type": "keyword"}, "verdict": {"type": "keyword"},
        "assignee": {"type": "keyword"}, "group_key": {"type": "keyword"}, "count": {"type": "long"},
        "event_ids": {"type": "keyword"}, "events": {"type": "object", "enabled": False}, "shadow": {"type": "boolean"},
        "kind": {"type": "keyword"}, "summary": {"type": "text"}, "response": {"type": "object", "enabled": False},
        "notes": {"type": "object", "enabled": False}, "history": {"type": "object", "enabled": False},
        "operation": {"type": "object", "enabled": False},
        "grade": {"properties": {"code": {"type": "keyword"}, "name": {"type": "keyword"}, "en": {"type": "keyword"},
                                 "standard": {"type": "keyword"}, "basis": {"type": "keyword"}}},
    }
}  # fmt: skip


class AlertError(GovctlError):
    """An alert action that cannot be done."""

    exit_code = 2

    http_status = 409


_ensured: set[int] = set()


def ensure_index(es: Elasticsearch) -> None:
    """The alerts template, and its mapping on the index if something created it earlier (mappings only grow)."""
    if id(es) in _ensured:
        return
    es.indices.put_index_template(name="soc-alerts", index_patterns=[ALERTS_INDEX], priority=200,
                                  template={"settings": {"number_of_shards": 1, **REPLICAS}, "mappings": ALERT_MAPPINGS})  # fmt: skip
    if es.indices.exists(index=ALERTS_INDEX):
        try:
            es.indices.put_mapping(index=ALERTS_INDEX, properties=ALERT_MAPPINGS["properties"])
        except BadRequestError as exc:
            raise AlertError(f"index {ALERTS_INDEX} has a mapping this version cannot use ({exc.message})",
                             hint="reindex it into a new index, or delete it if its alerts are not needed") from None
    _ensured.add(id(es))


def _now() -> str:
    return clock.es_iso(clock.now())


# GB/T 20986-2023 (信息安全事件分类分级指南) grades. An alert starts at the grade its severity suggests; the
# analyst who triages it confirms or changes it (only a confirmed incident's scope decides the final grade).
GRADES = {
    "critical": {"code": "I", "name": "特别重大事件", "en": "extraordinarily serious"},
    "high": {"code": "II", "name": "重大事件", "en": "serious"},
    "medium": {"code": "III", "name": "较大事件", "en": "relatively serious"},
    "low": {"code": "IV", "name": "一般事件", "en": "general"},
    "informational": {"code": "IV", "name": "一般事件", "en": "general"},
}


def grade(severity: str) -> dict[str, str]:
    """The national event grade (GB/T 20986) an alert of this severity starts at."""
    return {**GRADES.get(severity, GRADES["low"]), "standard": "GB/T 20986-2023", "basis": "initial, from the rule's severity"}


def group_key(rule: Any, event: dict[str, Any]) -> str:
    """What makes two matches 'the same': a correlation's group-by fields, else host, user, source and target."""
    from control_plane.soc.matcher import get_field

    parts = []
    for f in getattr(rule, "group_by", None) or ("host.name", "user.name", "source.ip", "govctl.target"):
        v = get_field(event, f)
        parts.append(f"{f}={v if isinstance(v, (str, int, float)) else ''}")
    return "|".join(parts)


def record_matches(es: Elasticsearch, rule: Any, hits: list[dict[str, Any]], created_ids: list[str] | None = None,
                   *, synthetic: bool = False) -> tuple[int, int]:  # fmt: skip
    """Fold matching events into alerts; return (alerts created, alerts updated). Re-running is harmless.

    ``synthetic`` only for the engine's own coverage events, as the caller proved them (never a field of the event).

    The ids of newly raised alerts are appended to ``created_ids`` when given.
    """
    ensure_index(es)
    groups: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        groups.setdefault(group_key(rule, h["_source"]), []).append(h)
    created = updated = 0
    for key, items in groups.items():
        for _attempt in range(5):  # the streaming and the scheduled path may fold into one alert at once
            try:
                c, u = _fold(es, rule, key, items, created_ids, synthetic)
                break
            except ConflictError:
                continue
        else:
            raise AlertError(f"alert for {rule.id} {key} kept changing under us; retry the run")
        created, updated = created + c, updated + u
    return created, updated


def _fold(es: Elasticsearch, rule: Any, key: str, items: list[dict[str, Any]], created_ids: list[str] | None,
          synthetic: bool = False) -> tuple[int, int]:  # fmt: skip
    """One group's events into its open alert (optimistic concurrency) or a new one; (created, updated)."""
    window = timedelta(seconds=rule.ours.suppression_s)
    first_ts = items[0]["_source"].get("@timestamp")
    existing = es.search(index=ALERTS_INDEX, size=1, sort=[{"last_seen": "desc"}], ignore_unavailable=True, seq_no_primary_term=True, query={"bool": {"filter": [
        {"term": {"rule.id": rule.id}}, {"term": {"group_key": key}}, {"terms": {"status": ["open", "acknowledged"]}},
        {"range": {"last_seen": {"gte": _shift(first_ts, -window)}}}]}})["hits"]["hits"]  # fmt: skip
    ids = [h["_id"] for h in items]
    last_ts = max(h["_source"].get("@timestamp", "") for h in items)
    if existing:
        doc = existing[0]["_source"]
        known = set(doc.get("event_ids", []))
        new = [i for i in ids if i not in known]
        if not new:
            return 0, 0
        doc["event_ids"] = (doc.get("event_ids", []) + new)[:MAX_EVENT_IDS]
        doc["count"] = doc.get("count", 0) + len(new)
        doc["last_seen"] = max(doc["last_seen"], last_ts)
        doc["history"] = doc.get("history", []) + [{"ts": _now(), "actor": "soc-engine", "action": "repeat", "added": len(new)}]
        es.index(index=ALERTS_INDEX, id=existing[0]["_id"], document=doc, refresh=True,
                 if_seq_no=existing[0]["_seq_no"], if_primary_term=existing[0]["_primary_term"])  # fmt: skip
        return 0, 1
    alert_id = sm3_hex(f"{rule.id}|{key}|{ids[0]}".encode())[:24]
    doc = {
        "@timestamp": _now(), "kind": "synthetic" if synthetic else "detection", "rule": {"id": rule.id, "name": rule.path.stem, "title": rule.title},
        "severity": rule.ours.severity, "grade": grade(rule.ours.severity), "status": "open", "verdict": None, "assignee": None, "group_key": key,
        "first_seen": first_ts, "last_seen": last_ts, "count": len(ids), "event_ids": ids[:MAX_EVENT_IDS],
        "events": [h["_source"] for h in items[:SNAPSHOT_EVENTS]], "shadow": rule.ours.mode == "shadow",
        "summary": f"{rule.title}: {len(ids)} event(s), {key}", "notes": [],
        "history": [{"ts": _now(), "actor": "soc-engine", "action": "raised"}],
    }  # fmt: skip
    try:
        es.index(index=ALERTS_INDEX, id=alert_id, document=doc, op_type="create", refresh=True)
    except ConflictError:
        return 0, 0  # the same first event already raised this alert (a re-run of the window)
    if created_ids is not None:
        created_ids.append(alert_id)
    return 1, 0


def _shift(ts: str | None, delta: timedelta) -> str:
    t = datetime.fromisoformat((ts or _now()).replace("Z", "+00:00"))
    return (t + delta).isoformat().replace("+00:00", "Z")


def get(es: Elasticsearch, alert_id: str) -> dict[str, Any]:
    """One alert (with its id)."""
    try:
        return {"id": alert_id, **es.get(index=ALERTS_INDEX, id=alert_id)["_source"]}
    except NotFoundError:
        raise AlertError(f"no alert {alert_id!r}", hint="list them with govctl soc alerts list") from None


def search(es: Elasticsearch, *, status: str | None = None, severity: str | None = None, rule: str | None = None,
           assignee: str | None = None, since: str | None = None, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Alerts, newest first, filtered. Synthetic coverage alerts are left out unless ``kind="synthetic"`` asks for them."""
    ensure_index(es)
    f: list[dict[str, Any]] = [{"term": {"kind": kind}}] if kind else []
    for field, value in (("status", status), ("severity", severity), ("assignee", assignee)):
        if value:
            f.append({"term": {field: value}})
    if rule:
        f.append({"bool": {"should": [{"term": {"rule.id": rule}}, {"term": {"rule.name": rule}}]}})
    if since:
        f.append({"range": {"last_seen": {"gte": since}}})
    es.indices.refresh(index=ALERTS_INDEX, ignore_unavailable=True)
    hidden = [] if kind else [{"term": {"kind": "synthetic"}}]
    hits = es.search(index=ALERTS_INDEX, size=min(limit, 1000), ignore_unavailable=True, sort=[{"last_seen": {"order": "desc", "missing": "_last"}}, {"@timestamp": "desc"}],
                     query={"bool": {"filter": f, "must_not": hidden}})["hits"]["hits"]  # fmt: skip
    return [{"id": h["_id"], **h["_source"]} for h in hits]


BREAK_GLASS_PREFIX = "gate-break-glass-"


def raise_alert(es: Elasticsearch, alert: AlertRef, *, kind: str = "gate") -> str:
    """Index an alert raised outside a detection pass (the gate's break-glass, the engine's own health), once per id."""
    doc = {
        "@timestamp": alert.at, "first_seen": alert.at, "last_seen": alert.at, "count": 1, "group_key": f"alert={alert.id}",
        "rule": {"id": alert.rule, "name": alert.rule.rsplit(".", 1)[-1], "title": alert.title},
        "severity": alert.severity, "grade": grade(alert.severity), "status": "open", "kind": kind,
        "history": [{"ts": alert.at, "actor": kind, "action": "raised"}],
        "summary": alert.summary, "operation": dict(alert.operation),
    }  # fmt: skip
    ensure_index(es)
    es.index(index=ALERTS_INDEX, id=alert.id, document=doc, refresh="wait_for")
    return alert.id


def closed_by(es: Elasticsearch, alert_id: str) -> str | None:
    """Who last closed an alert (None: open, unknown or unreadable)."""
    try:
        doc = es.get(index=ALERTS_INDEX, id=alert_id)["_source"]
    except (ApiError, *UNREACHABLE):
        return None
    closes = [h.get("actor") for h in doc.get("history", []) if h.get("action") == "close"]
    return closes[-1] if closes else None


class GateAlerts:
    """The gate's alert sink: its alerts are SOC alerts like any other."""

    def __init__(self, es_factory: Any) -> None:
        self._es = es_factory

    def raise_alert(self, alert: AlertRef) -> None:
        """Index the gate's alert (break-glass ids are ``gate-break-glass-<op>``)."""
        raise_alert(self._es(), alert, kind="gate")

    def closed_by(self, alert_id: str) -> str | None:
        """Who closed it."""
        return closed_by(self._es(), alert_id)


def set_response(es: Elasticsearch, alert_id: str, response: dict[str, Any]) -> None:
    """Attach (or update) the response operation and its outcome on an alert."""
    doc = get(es, alert_id)
    doc.pop("id")
    doc["response"] = {**(doc.get("response") or {}), **response}
    doc["history"] = doc.get("history", []) + [{"ts": _now(), "actor": "soc-engine", "action": "response", **{k: v for k, v in response.items() if k in ("op_id", "status")}}]
    es.index(index=ALERTS_INDEX, id=alert_id, document=doc, refresh="wait_for")


def update(es: Elasticsearch, alert_id: str, *, actor: str, action: str, assignee: str | None = None,
           verdict: str | None = None, text: str | None = None) -> dict[str, Any]:  # fmt: skip
    """ack | assign | close | note — with a history entry for each."""
    doc = get(es, alert_id)
    doc.pop("id")
    before = doc["status"]
    if action == "ack":
        if before != "open":
            raise AlertError(f"alert {alert_id} is {before}; only open alerts can be acknowledged")
        doc["status"] = "acknowledged"
        doc["assignee"] = doc.get("assignee") or actor
    elif action == "assign":
        if not assignee:
            raise AlertError("say who with an assignee")
        doc["assignee"] = assignee
    elif action == "close":
        if verdict not in VERDICTS:
            raise AlertError(f"closing needs a verdict, one of {', '.join(VERDICTS)}")
        if before == "closed":
            raise AlertError(f"alert {alert_id} is already closed")
        doc["status"], doc["verdict"] = "closed", verdict
    elif action == "note":
        if not text:
            raise AlertError("a note needs text")
    else:
        raise AlertError(f"unknown alert action {action!r}", hint="ack, assign, close or note")
    if text:
        doc["notes"] = doc.get("notes", []) + [{"ts": _now(), "author": actor, "text": text}]
    doc["history"] = doc.get("history", []) + [{"ts": _now(), "actor": actor, "action": action, "from": before, "to": doc["status"],
                                                **({"assignee": doc["assignee"]} if action == "assign" else {}),
                                                **({"verdict": verdict} if verdict else {})}]  # fmt: skip
    es.index(index=ALERTS_INDEX, id=alert_id, document=doc, refresh="wait_for")
    return {"id": alert_id, **doc}
