"""Tables and value types of the operation gate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, String, Table, Text

from control_plane.audit.models import canonical_json
from control_plane.crypto import sm3_hex
from control_plane.db import metadata
from control_plane.operation import OperationRequest, Principal  # noqa: F401 - re-exported


users = Table(
    "iam_users", metadata,
    Column("name", String(64), primary_key=True), Column("roles", Text, nullable=False),
    Column("created", String(32), nullable=False), Column("disabled", Boolean, nullable=False, default=False),
    Column("department", String(64), nullable=False, default=""),
    Column("enrol_sm3", String(64)), Column("enrol_expires", String(32)), Column("enrolled", String(32)),
    Column("totp_secret", Text), Column("totp_pending", Text), Column("totp_last_step", BigInteger),
    Column("password_hash", Text), Column("password_history", Text), Column("password_changed", String(32)),
)  # fmt: skip
auth_failures = Table(
    "iam_auth_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("key", String(160), nullable=False),
    Column("ts", String(32), nullable=False),
)  # fmt: skip
console_sessions = Table(
    "console_sessions", metadata,
    Column("id_sm3", String(64), primary_key=True), Column("user", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False), Column("source", String(64), nullable=False),
    Column("created", String(32), nullable=False), Column("last_seen", String(32), nullable=False),
    Column("expires", String(32), nullable=False), Column("ended", String(32)), Column("lang", String(8), nullable=False),
)  # fmt: skip
tokens = Table(
    "iam_tokens", metadata,
    Column("id", String(16), primary_key=True), Column("user", String(64), nullable=False),
    Column("secret_sm3", String(64), nullable=False), Column("created", String(32), nullable=False),
    Column("expires", String(32), nullable=False), Column("revoked", String(32)),
    Column("description", String(200), nullable=False, default=""),
)  # fmt: skip
operations = Table(
    "gate_operations", metadata,
    Column("id", String(32), primary_key=True), Column("operation", String(128), nullable=False),
    Column("target", String(512), nullable=False), Column("params", Text, nullable=False),
    Column("request_hash", String(64), nullable=False), Column("requester", String(64), nullable=False),
    Column("roles", Text, nullable=False), Column("source", String(64), nullable=False),
    Column("reason", Text, nullable=False), Column("risk", String(16), nullable=False),
    Column("approvals_needed", Integer, nullable=False), Column("status", String(24), nullable=False),
    Column("soc", Text, nullable=False), Column("preview", Text, nullable=False, default=""),
    Column("result", Text, nullable=False, default=""), Column("break_glass", Boolean, nullable=False, default=False),
    Column("created", String(32), nullable=False), Column("expires", String(32), nullable=False),
    Column("updated", String(32), nullable=False),
    Column("origin", Text, nullable=False, default=""),  # what raised it, typed: {"alert": id}
)  # fmt: skip
approvals = Table(
    "gate_approvals", metadata,
    Column("op_id", String(32), primary_key=True), Column("approver", String(64), primary_key=True),
    Column("decision", String(16), nullable=False), Column("request_hash", String(64), nullable=False),
    Column("comment", Text, nullable=False), Column("ts", String(32), nullable=False),
    Column("expires", String(32), nullable=False),
)  # fmt: skip
reviews = Table(
    "gate_reviews", metadata,
    Column("op_id", String(32), primary_key=True), Column("opened", String(32), nullable=False),
    Column("status", String(16), nullable=False), Column("reviewer", String(64)), Column("verdict", Text),
    Column("closed", String(32)), Column("alert_sent", Boolean, nullable=False, default=False),
)  # fmt: skip


def request_hash(operation: str, target: str, params: dict[str, Any], *, reason: str = "", break_glass: bool = False,
                 origin: dict[str, str] | None = None) -> str:  # fmt: skip
    """SM3 over the canonical form of exactly what will run, why, and (for an engine's request) what raised it: approvals are bound to this."""
    body: dict[str, Any] = {"operation": operation, "target": target, "params": params, "reason": reason, "break_glass": bool(break_glass)}
    if origin:
        body["origin"] = origin
    return sm3_hex(canonical_json(body).encode())


@dataclass
class OperationView:
    """An operation as the requester and approvers see it."""

    id: str
    operation: str
    target: str
    params: dict[str, Any]
    request_hash: str
    requester: str
    source: str
    reason: str
    risk: str
    approvals_needed: int
    status: str
    soc: dict[str, Any]
    preview: Any
    result: Any
    break_glass: bool
    created: str
    expires: str
    approvals: list[dict[str, Any]] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)
    secret: str | None = None  # shown once (a new token), never stored

    @classmethod
    def from_row(cls, row: Any, approvals_rows: list[Any]) -> OperationView:
        """Build from a gate_operations row and its approvals."""
        m = row._mapping
        return cls(
            id=m["id"], operation=m["operation"], target=m["target"], params=json.loads(m["params"]),
            request_hash=m["request_hash"], requester=m["requester"], source=m["source"], reason=m["reason"],
            risk=m["risk"], approvals_needed=m["approvals_needed"], status=m["status"], soc=json.loads(m["soc"]),
            preview=json.loads(m["preview"]) if m["preview"] else None,
            result=json.loads(m["result"]) if m["result"] else None, break_glass=bool(m["break_glass"]),
            created=m["created"], expires=m["expires"],
            approvals=[dict(a._mapping) for a in approvals_rows], origin=json.loads(m["origin"]) if m.get("origin") else {},
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the API."""
        d = dict(self.__dict__)
        if d["secret"] is None:
            d.pop("secret")
        return d
