"""Inline decisions: may this operation run? (``soc.evaluate``)

The operation gate calls ``InlineEngine.evaluate`` before anything runs. Detection rules are
loaded by the SOC engine; with none loaded the decision is ``allow`` and says so, so nobody
mistakes an empty engine for a clean bill of health.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from control_plane.errors import GovctlError

Action = Literal["allow", "block", "require_approval"]


class SocUnavailable(GovctlError):
    """The SOC engine (or the Elasticsearch behind it) could not give a decision."""

    http_status = 503


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

    def as_dict(self) -> dict[str, Any]:
        """Plain data for storage and display."""
        return {"action": self.action, "matched_rules": list(self.matched_rules), "reasons": list(self.reasons), "degraded": self.degraded}


@dataclass
class InlineEngine:
    """Rules are callables returning a Decision or None; the strictest answer wins."""

    rules: list[tuple[str, Callable[[OperationEvent], Decision | None]]] = field(default_factory=list)

    def evaluate(self, event: OperationEvent) -> Decision:
        """Match the event against every loaded rule; block beats require_approval beats allow."""
        if not self.rules:
            return Decision("allow", reasons=("no rules loaded",))
        rank = {"allow": 0, "require_approval": 1, "block": 2}
        best, matched, reasons = "allow", [], []
        for name, rule in self.rules:
            d = rule(event)
            if d is None:
                continue
            matched.append(name)
            reasons.extend(d.reasons)
            if rank[d.action] > rank[best]:
                best = d.action
        return Decision(best, tuple(matched), tuple(reasons) or ("no rule matched",))
