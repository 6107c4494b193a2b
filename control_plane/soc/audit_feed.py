"""The SOC's view of the audit trail: each ledger record as an ECS event in the daily event index.

The audit mirror job hands every record it mirrors to this feed (the ledger knows nothing of the
SOC's schema). Correlation rules count these events (repeated refusals of one actor, say) and
operation rules see what was actually asked of the gate, after the fact.
"""

from __future__ import annotations

import json
from typing import Any

from elasticsearch import Elasticsearch

from control_plane.audit.models import AuditRecord
from control_plane.soc.ingest import stamp
from control_plane.soc.schema import ensure_templates, events_index


OUTCOMES = {"succeeded": "success", "failed": "failure", "refused": "failure"}


def to_soc_event(rec: AuditRecord) -> dict[str, Any]:
    """An audit record as an ECS event for the SOC engine (``event.dataset: govctl.audit``)."""
    src = rec.source or ""
    ip = src.split("%", 1)[0] if src[:1].isdigit() or ":" in src else None
    try:
        details = json.loads(rec.details or "{}") or {}
    except ValueError:
        details = {}
    error = details.get("error") if rec.decision == "deny" and isinstance(details, dict) else None
    if rec.operation == "bastion.command" and isinstance(details, dict) and isinstance(details.get("command"), str):
        return _bastion_event(rec, details, src, ip)
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


def _bastion_event(rec: AuditRecord, d: dict[str, Any], src: str, ip: str | None) -> dict[str, Any]:
    """A line judged in a bastion session (``event.dataset: govctl.bastion``): rules and correlations see shell activity."""
    verdict = d.get("verdict") or {}
    command = d["command"]
    return {
        "@timestamp": rec.ts,
        "event": {"kind": "event", "module": "govctl", "dataset": "govctl.bastion", "category": ["process"], "type": ["start"],
                  "action": str(verdict.get("action", rec.decision)), "outcome": "failure" if rec.outcome == "refused" else "success",
                  "id": f"audit-{rec.seq}"},
        "user": {"name": rec.actor, "target": {"name": str(d.get("account", ""))}},
        "host": {"name": str(d.get("host", ""))},
        "source": {"address": src, **({"ip": ip} if ip else {})},
        "process": {"command_line": command, "name": command.strip().split(" ", 1)[0].rsplit("/", 1)[-1] if command.strip() else ""},
        "rule": {"name": list(verdict.get("rules") or [])},
        "govctl": {"operation": rec.operation, "target": rec.target, "decision": rec.decision, "outcome": rec.outcome, "seq": rec.seq,
                   "session": str(d.get("session", "")), "kind": str(d.get("kind", "")), "zone": str(d.get("zone", "")),
                   "request_id": rec.request_id},
    }  # fmt: skip


class AuditEvents:
    """The feed the audit mirror writes to: one SOC event per record, id ``govctl-audit-<seq>``."""

    def prepare(self, es: Elasticsearch) -> None:
        """The SOC's index templates."""
        ensure_templates(es)

    def actions(self, recs: list[AuditRecord]) -> list[dict[str, Any]]:
        """One index action per record into its day's event index."""
        acts = [{"_op_type": "index", "_index": events_index(r.ts), "_id": f"govctl-audit-{r.seq}", "_source": to_soc_event(r)} for r in recs]
        stamp(acts)
        return acts


FEED = AuditEvents()
