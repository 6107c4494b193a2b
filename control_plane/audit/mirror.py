"""Mirror the audit chain into Elasticsearch for the SOC engine.

Each record is written twice: as itself into the audit index (the trail, searchable), and as an
ECS event into the daily SOC event index, where detection and correlation rules see it.

A cursor row (``audit_mirror``) remembers the last mirrored sequence number. Documents use the
sequence number as ``_id``, so a batch re-sent after a crash overwrites itself instead of
doubling. While Elasticsearch is down nothing moves and nothing is lost: the next run resumes.
"""

from __future__ import annotations


from dataclasses import dataclass
from typing import Any, Protocol

from elasticsearch import Elasticsearch, helpers
from sqlalchemy import select

from control_plane.audit.models import AuditRecord, mirror_state
from control_plane.audit.service import Ledger
from control_plane.clock import now_iso as utc_now_iso
from control_plane.es import UNREACHABLE, ensure_template

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


class Feed(Protocol):
    """Another index that gets each mirrored record in its own shape (the SOC's event feed, for one)."""

    def prepare(self, es: Elasticsearch) -> None:
        """Make sure its index templates exist."""

    def actions(self, recs: list[AuditRecord]) -> list[dict[str, Any]]:
        """Bulk actions for these records (idempotent ids)."""


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


def mirror(ledger: Ledger, es: Elasticsearch, index: str, *, batch: int = 2000, feeds: tuple[Feed, ...] = ()) -> MirrorResult:
    """Send every record after the cursor to ``index`` (and to each feed); on an unreachable node, keep the cursor."""
    last = cursor(ledger)
    sent = 0
    try:
        ensure_template(es, f"{index}-template", [index, f"{index}-*"], AUDIT_MAPPINGS)
        for f in feeds:
            f.prepare(es)
        while True:
            recs = ledger.query(after_seq=last, limit=batch, newest_first=False)
            if not recs:
                break
            actions = [{"_op_type": "index", "_index": index, "_id": str(r.seq), "_source": to_document(r)} for r in recs]
            for f in feeds:
                actions += f.actions(recs)
            _ok, errors = helpers.bulk(es, actions, raise_on_error=False, refresh=False)
            if errors:
                return MirrorResult(sent, last, f"{len(errors)} documents refused, first: {errors[0]}")
            last = recs[-1].seq
            sent += len(recs)  # records, each written to both indices
            _set_cursor(ledger, last)
    except UNREACHABLE as exc:
        return MirrorResult(sent, last, f"Elasticsearch unreachable ({type(exc).__name__}); will retry")
    return MirrorResult(sent, last)
