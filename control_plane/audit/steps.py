"""The one adapter besides the gate that writes the ledger: the steps an engine takes inside an approved operation.

A Pulumi deployment's resource steps and an Ansible run's task results are recorded as they
happen, attributed to the engine, so the trail shows what was done on the way, not only the
request and its outcome.
"""

from __future__ import annotations

from typing import Any

from control_plane.audit.models import AuditEvent
from control_plane.audit.service import Ledger


def record(ledger: Ledger, *, actor: str, role: str, operation: str, target: str, params: Any = None,
           outcome: str = "succeeded", details: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Append one engine step (``deploy.step``, ``playbook.task``)."""
    ledger.append(AuditEvent(actor=actor, role=role, source="local", operation=operation, target=target, params=params,
                             outcome=outcome, details=details or {}))  # fmt: skip
