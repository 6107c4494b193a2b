"""The one policy file: who may change what (``changes:``), who may read what (``reads:``), what the system's own jobs may do.

Loaded into frozen typed models with file:line:field errors. The CLI, the API and the gate all
ask it the same way (``Gate.authorize`` for a change, ``Gate.authorize_read`` for a read).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from control_plane.loader import load_model

Risk = Literal["low", "high", "critical"]
RISK_ORDER = {"low": 0, "high": 1, "critical": 2}
DEFAULT_POLICY = Path(str(files("control_plane"))) / "policy.yaml"  # package data


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskRule(_M):
    target: str | None = None
    params: dict[str, Any] | None = None
    risk: Risk


class OperationPolicy(_M):
    roles: list[str] = Field(min_length=1)
    risk: Risk
    rules: list[RiskRule] = []
    fail_mode: Literal["open", "closed"] | None = None
    self_only_except: list[str] | None = None


class WhitelistEntry(_M):
    roles: list[str] = ["*"]
    operations: list[str] = ["*"]
    targets: list[str] = ["*"]
    networks: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _networks_parse(self) -> WhitelistEntry:
        for n in self.networks:
            if n != "local":
                ipaddress.ip_network(n, strict=False)
        return self

    @cached_property
    def _nets(self) -> list[Any]:
        return [n if n == "local" else ipaddress.ip_network(n, strict=False) for n in self.networks]

    def matches(self, roles: list[str], operation: str, target: str, source: str) -> bool:
        """True if this entry admits one of ``roles`` doing ``operation`` on ``target`` from ``source``."""
        if "*" not in self.roles and not set(roles) & set(self.roles):
            return False
        if not any(fnmatch.fnmatchcase(operation, p) for p in self.operations):
            return False
        if not any(fnmatch.fnmatchcase(target, p) for p in self.targets):
            return False
        if source == "local":
            return "local" in self.networks
        try:
            addr = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(n != "local" and addr in n for n in self._nets)


class ReadPolicy(_M):
    roles: list[str] = Field(min_length=1)
    description: str = ""


class SystemPrincipal(_M):
    operations: list[str] = []
    unattended: list[str] = []  # of those, the ones that run without an approver


class BreakGlass(_M):
    roles: list[str] = []
    operations: list[str] = []


class Approval(_M):
    required: dict[Risk, int] = {"low": 0, "high": 1, "critical": 2}
    approval_ttl_s: int = Field(default=3600, ge=60)
    request_ttl_s: int = Field(default=86400, ge=60)


class Policy(_M):
    roles: dict[str, str]
    changes: dict[str, OperationPolicy]
    reads: dict[str, ReadPolicy] = {}
    system: dict[str, SystemPrincipal] = {}
    whitelist: list[WhitelistEntry]
    fail_mode: dict[Risk, Literal["open", "closed"]] = {"low": "open", "high": "closed", "critical": "closed"}
    break_glass: BreakGlass = BreakGlass()
    approval: Approval = Approval()

    @property
    def operations(self) -> dict[str, OperationPolicy]:
        """The operations that change the world (the ``changes:`` section)."""
        return self.changes

    @model_validator(mode="after")
    def _roles_known(self) -> Policy:
        known = set(self.roles)
        for name, op in self.changes.items():
            for r in [*op.roles, *(op.self_only_except or [])]:
                if r not in known:
                    raise ValueError(f"changes.{name}.roles: unknown role {r!r}; known roles: {', '.join(sorted(known))}")
        for name, rd in self.reads.items():
            for r in rd.roles:
                if r not in known:
                    raise ValueError(f"reads.{name}.roles: unknown role {r!r}; known roles: {', '.join(sorted(known))}")
        for name, sp in self.system.items():
            if not name.startswith("system:"):
                raise ValueError(f"system.{name}: system principals are named system:<engine>")
            for o in [*sp.operations, *sp.unattended]:
                if o not in self.changes:
                    raise ValueError(f"system.{name}: {o!r} is not an operation under changes:")
            if set(sp.unattended) - set(sp.operations):
                raise ValueError(f"system.{name}.unattended: must be a subset of its operations")
        for r in self.break_glass.roles:
            if r not in known:
                raise ValueError(f"break_glass.roles: unknown role {r!r}")
        if self.approval.required.get("critical", 2) < 2:
            raise ValueError("approval.required.critical: critical operations need at least 2 approvers")
        return self

    def risk_of(self, operation: str, target: str, params: dict[str, Any]) -> Risk:
        """The operation's base risk, changed by the first rule that matches target and params."""
        op = self.operations[operation]
        for rule in op.rules:
            if rule.target is not None and not fnmatch.fnmatchcase(target, rule.target):
                continue
            if rule.params is not None and any(params.get(k) != v for k, v in rule.params.items()):
                continue
            return rule.risk
        return op.risk

    def fail_mode_of(self, operation: str, risk: Risk) -> str:
        """'open' or 'closed' when a dependency is down."""
        return self.operations[operation].fail_mode or self.fail_mode.get(risk, "closed")


def load_policy(path: Path | None = None) -> Policy:
    """Load and validate a policy file; refuse it with file, line and field for every error."""
    return load_model(Path(path or DEFAULT_POLICY), Policy, what="gate policy", hint="fix the policy file (gate.policy_file)")
