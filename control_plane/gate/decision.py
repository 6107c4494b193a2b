"""What the gate asks an inline decider (the SOC engine) and what it answers; what it tells an alert sink.

The gate defines these protocols and knows nothing of who implements them: the composition root
(``control_plane.wiring``) plugs the SOC engine in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from control_plane.errors import GovctlError

Action = Literal["allow", "block", "require_approval"]
# what an interactive session does with a line: an alert rule lets it run and raises the alert
SessionAction = Literal["allow", "alert", "require_approval", "block"]
SESSION_RANK = {"allow": 0, "alert": 1, "require_approval": 2, "block": 3}


class SocUnavailable(GovctlError):
    """The SOC engine (or the Elasticsearch behind it) could not give a decision."""

    http_status = 503
    exit_code = 6


@dataclass(frozen=True)
class OperationEvent:
    """What the gate asks about: a parsed operation, not a raw string."""

    operation: str
    target: str
    params: dict[str, Any]
    actor: str
    roles: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Decision:
    """The engine's answer."""

    action: Action
    matched_rules: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    degraded: bool = False
    # for a bastion session: the rules' verdict with alert rules as "alert" (findings excluded), and the findings' kinds
    session_action: SessionAction | None = None
    findings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain data for storage and display."""
        d: dict[str, Any] = {"action": self.action, "matched_rules": list(self.matched_rules), "reasons": list(self.reasons), "degraded": self.degraded}
        if self.session_action is not None:
            d["session_action"] = self.session_action
        if self.findings:
            d["findings"] = list(self.findings)
        return d


class InlineDecider(Protocol):
    """Anything that decides on an operation before it runs."""

    def evaluate(self, op: OperationEvent) -> Decision:
        """Allow, block or ask for approval; raise SocUnavailable when it cannot say."""


class AllowAll:
    """The decider of a gate with no SOC engine plugged in (tests of the gate alone)."""

    def evaluate(self, op: OperationEvent) -> Decision:
        """Allow everything."""
        return Decision("allow")


@dataclass(frozen=True)
class AlertRef:
    """An alert the gate raises, by its typed parts (the sink owns the index and the document shape)."""

    id: str
    rule: str
    title: str
    severity: Literal["low", "medium", "high", "critical"]
    summary: str
    at: str
    operation: dict[str, Any]


class AlertSink(Protocol):
    """Where the gate's own alerts (break-glass) go, and who closed them."""

    def raise_alert(self, alert: AlertRef) -> None:
        """Index the alert (idempotent by id); raise OSError/ConnectionError-like errors when unreachable."""

    def closed_by(self, alert_id: str) -> str | None:
        """Who closed the alert, or None (open, unknown or unreadable)."""
