"""Event and alert indices: ECS field names, explicit mappings, daily event indices."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from control_plane.es import REPLICAS

EVENTS_PREFIX = "soc-events-"
DEADLETTER_INDEX = "soc-deadletter"
ALERTS_INDEX = "soc-alerts"

_KW = {"type": "keyword", "normalizer": "lowercase_norm", "ignore_above": 4096}
_ID = {"type": "keyword", "ignore_above": 1024}
# no ignore_malformed: an address that does not parse fails the document, which goes to the dead-letter index
# (a half-indexed event would keep the bad value in _source, where responses could pick it up)
_IP = {"type": "ip"}

EVENT_MAPPINGS: dict[str, Any] = {
    "dynamic": True,  # shippers (rsyslog) add fields; known ones are typed below
    "dynamic_templates": [{"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 4096}}}],
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "event": {"properties": {"id": _ID, "kind": _KW, "category": _KW, "type": _KW, "action": _KW, "outcome": _KW,
                                 "module": _KW, "dataset": _KW, "reason": _KW, "original": {"type": "keyword", "index": False, "doc_values": False},
                                 "ingested": {"type": "date"}}},
        "host": {"properties": {"name": _KW, "ip": _IP}},
        "source": {"properties": {"ip": _IP, "port": {"type": "long"}, "address": _KW}},
        "destination": {"properties": {"ip": _IP, "port": {"type": "long"}}},
        "user": {"properties": {"name": _KW, "id": _ID, "roles": _KW, "effective": {"properties": {"name": _KW}},
                                "target": {"properties": {"name": _KW, "id": _ID, "group": {"properties": {"name": _KW}}}}}},
        "group": {"properties": {"name": _KW, "id": _ID}},
        "process": {"properties": {"name": _KW, "pid": {"type": "long"}, "executable": _KW, "command_line": _KW,
                                   "args": _KW, "working_directory": _KW, "tty": {"properties": {"name": _KW}},
                                   "parent": {"properties": {"name": _KW, "executable": _KW}}}},
        "file": {"properties": {"path": _KW, "type": _KW}},
        "service": {"properties": {"name": _KW}},
        "tags": _KW,
        "log": {"properties": {"syslog": {"properties": {"appname": _KW, "hostname": _KW}}}},
        "related": {"properties": {"ip": _IP, "user": _KW}},
        "govctl": {"properties": {"target": _KW, "operation": _KW, "decision": _KW, "outcome": _KW, "seq": {"type": "long"},
                                  "request_id": _ID, "params": {"type": "flattened"}, "pool": _KW,
                                  "records": {"type": "long"}, "off_hours": {"type": "boolean"}, "synthetic": {"type": "keyword"}, "audit": {"type": "object", "enabled": False},
                                  "parse": _KW, "audit_op": _KW}},
    },
}

INDEX_SETTINGS = {"analysis": {"normalizer": {"lowercase_norm": {"type": "custom", "filter": ["lowercase"]}}}}


def events_index(ts: str | datetime | None = None) -> str:
    """The daily index for an event time (UTC)."""
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            ts = None
    ts = ts or datetime.now(timezone.utc)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return f"{EVENTS_PREFIX}{ts.astimezone(timezone.utc):%Y.%m.%d}"


def indices_between(start: datetime, end: datetime, *, most: int = 31) -> str:
    """The daily event indices a time range can touch (comma-separated), or the wildcard for long ranges.

    Naming them lets Elasticsearch search one or two shards instead of every day kept (180+).
    """
    from datetime import timedelta

    a, b = start.astimezone(timezone.utc).date(), end.astimezone(timezone.utc).date()
    days = (b - a).days + 1
    if days > most or days < 1:
        return f"{EVENTS_PREFIX}*"
    return ",".join(f"{EVENTS_PREFIX}{a + timedelta(days=i):%Y.%m.%d}" for i in range(days))


def ensure_templates(es: Any) -> None:
    """Create or update the event and dead-letter templates (one shard, no replicas locally)."""
    es.indices.put_index_template(
        name="soc-events", index_patterns=[f"{EVENTS_PREFIX}*"], priority=200,
        template={"settings": {"number_of_shards": 1, **REPLICAS, **INDEX_SETTINGS}, "mappings": EVENT_MAPPINGS},
    )  # fmt: skip
    es.indices.put_index_template(
        name="soc-deadletter", index_patterns=[DEADLETTER_INDEX], priority=200,
        template={"settings": {"number_of_shards": 1, **REPLICAS},
                  "mappings": {"properties": {"@timestamp": {"type": "date"}, "reason": {"type": "text"},
                                              "source": {"type": "keyword"}, "original": {"type": "keyword", "index": False}}}},
    )  # fmt: skip
