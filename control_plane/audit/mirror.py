"""Mirror the audit chain into Elasticsearch for the SOC engine.

Each record is written twice: as itself into the audit index (the trail, searchable), and as an
ECS event into the daily SOC event index, where detection and correlation rules see it.

A cursor row (``audit_mirror``) remembers the last mirrored sequence number. Documents use the
sequence number as ``_id``, so a batch re-sent after a crash overwrites itself instead of
doubling. While Elasticsearch is down nothing moves and nothing is lost: the next run resumes.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, helpers
from sqlalchemy import select

from control_plane.audit.models import AuditRecord, mirror_state
from control_plane.audit.service import Ledger, utc_now_iso
from control_plane.es import UNREACHABLE, ensure_template
from control_plane.soc.schema import ensure_templates, events_index

MIRROR_NAME = "elasticsearch"

AUDIT_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"kind": {"type": "keyword"}, "category": {"type": "keyword"},
                                 "action": {"type": "keyword"}, "outcome": {"type": "keyword"}}},  # fmt: skip
        "user": {"properties": {"name": {"type": "keyword"}, "roles": {"type": "keyword"}}},
        "source": {"properties": {"address": {"type": "keyword"}}},
        "govctl": {
            "properties": {
                "audit": {
                    "properties": {
                        "seq": {"type": "long"},
                        "hash": {"type": "keyword"},
                        "prev_hash": {"type": "keyword"},
                        "target": {"type": "keyword"},
                        "params_digest": {"type": "keyword"},
                        "decision": {"type": "keyword"},
                        "request_id": {"type": "keyword"},
                        "details": {"type": "flattened"},
                    }
                }
            }
        },
    },
}


@dataclass
class MirrorResult:
    """What one mirror pass did."""

    sent: int
    last_seq: int
    error: str | None = None


def to_document(rec: AuditRecord) -> dict[str, Any]:
    """An audit record as an ECS-shaped document."""
    d = rec.as_dict()
    return {
        "@timestamp": rec.ts,
        "event": {"kind": "event", "category": "configuration", "action": rec.operation,
                  "outcome": {"succeeded": "success", "failed": "failure"}.get(rec.outcome, "unknown")},  # fmt: skip
        "user": {"name": rec.actor, "roles": [rec.role] if rec.role else []},
        "source": {"address": rec.source},
        "govctl": {"audit": {"seq": rec.seq, "hash": rec.hash, "prev_hash": rec.prev_hash, "target": rec.target,
                             "params_digest": rec.params_digest, "decision": rec.decision,
                             "request_id": rec.request_id, "details": d["details"] or None}},  # fmt: skip
    }


OUTCOMES = {"succeeded": "success", "failed": "failure", "refused": "failure"}


def to_soc_event(rec: AuditRecord) -> dict[str, Any]:
    """An audit record as an ECS event for the SOC engine (``event.dataset: govctl.audit``).

    Correlation rules count these (for example repeated refusals of one actor) and operation
    rules see what was actually asked of the gate, after the fact.
    """
    src = rec.source or ""
    ip = src.split("%", 1)[0] if src[:1].isdigit() or ":" in src else None
    try:
        error = (json.loads(rec.details or "{}") or {}).get("error") if rec.decision == "deny" else None
    except (ValueError, AttributeError):
        error = None
    return {
        "@timestamp": rec.ts,
        "event": {"kind": "event", "module": "govctl", "dataset": "govctl.audit", "category": ["configuration"],
                  "action": rec.operation, "outcome": OUTCOMES.get(rec.outcome, "unknown"), "id": f"audit-{rec.seq}",
                  **({"reason": str(error)[:1024]} if error else {})},  # why the gate refused (with the offending value)
        "user": {"name": rec.actor, "roles": [rec.role] if rec.role else []},
        "source": {"address": src, **({"ip": ip} if ip else {})},
        "govctl": {"operation": rec.operation, "target": rec.target, "decision": rec.decision, "outcome": rec.outcome,
                   "seq": rec.seq, "request_id": rec.request_id},
    }  # fmt: skip


def cursor(ledger: Ledger) -> int:
    """The last sequence number known to be in Elasticsearch."""
    with ledger.engine.connect() as conn:
        v = conn.execute(select(mirror_state.c.last_seq).where(mirror_state.c.name == MIRROR_NAME)).scalar()
    return int(v or 0)


def _set_cursor(ledger: Ledger, seq: int) -> None:
    with ledger.engine.begin() as conn:
        updated = conn.execute(
            mirror_state.update().where(mirror_state.c.name == MIRROR_NAME).values(last_seq=seq, updated=utc_now_iso())
        ).rowcount
        if not updated:
            conn.execute(mirror_state.insert().values(name=MIRROR_NAME, last_seq=seq, updated=utc_now_iso()))


def mirror(ledger: Ledger, es: Elasticsearch, index: str, *, batch: int = 2000) -> MirrorResult:
    """Send every record after the cursor to ``index``; on an unreachable node, keep the cursor."""
    last = cursor(ledger)
    sent = 0
    try:
        ensure_template(es, f"{index}-template", [index, f"{index}-*"], AUDIT_MAPPINGS)
        ensure_templates(es)
        while True:
            recs = ledger.query(after_seq=last, limit=batch, newest_first=False)
            if not recs:
                break
            actions = [{"_op_type": "index", "_index": index, "_id": str(r.seq), "_source": to_document(r)} for r in recs]
            actions += [{"_op_type": "index", "_index": events_index(r.ts), "_id": f"govctl-audit-{r.seq}", "_source": to_soc_event(r)} for r in recs]
            _ok, errors = helpers.bulk(es, actions, raise_on_error=False, refresh=False)
            if errors:
                return MirrorResult(sent, last, f"{len(errors)} documents refused, first: {errors[0]}")
            last = recs[-1].seq
            sent += len(recs)  # records, each written to both indices
            _set_cursor(ledger, last)
    except UNREACHABLE as exc:
        return MirrorResult(sent, last, f"Elasticsearch unreachable ({type(exc).__name__}); will retry")
    return MirrorResult(sent, last)
