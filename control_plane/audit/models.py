"""Tables and value types of the audit ledger (the schema itself is an Alembic migration)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, String, Table, Text

from control_plane.crypto import sm3_hex
from control_plane.db import metadata


records = Table(
    "audit_records",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("operation", String(128), nullable=False),
    Column("target", String(512), nullable=False),
    Column("params_digest", String(64), nullable=False),
    Column("decision", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("head_hash", String(64), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("public_key", String(130), nullable=False),
    Column("signature", Text, nullable=False),
)

mirror_state = Table(
    "audit_mirror",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("updated", String(32), nullable=False),
)

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq", "ts", "actor", "role", "source", "operation", "target",
    "params_digest", "decision", "outcome", "request_id", "details",
)  # fmt: skip


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def params_digest(params: Any) -> str:
    """SM3 over the canonical JSON of an operation's parameters."""
    return sm3_hex(canonical_json(params).encode())


@dataclass(frozen=True)
class AuditEvent:
    """What a caller records: who did what to which target, from where, and how it ended."""

    actor: str
    operation: str
    target: str = ""
    role: str = ""
    source: str = "local"
    params: Any = None
    decision: str = "allow"
    outcome: str = "succeeded"
    request_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """A stored, chained record."""

    seq: int
    ts: str
    actor: str
    role: str
    source: str
    operation: str
    target: str
    params_digest: str
    decision: str
    outcome: str
    request_id: str
    details: str
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with ``details`` decoded."""
        d = asdict(self)
        d["details"] = json.loads(self.details) if self.details else {}
        return d


def record_hash(prev_hash: str, row: Any) -> str:
    """SM3(prev_hash || canonical list of the hashed fields), hex."""
    body = json.dumps([getattr(row, f) if not isinstance(row, dict) else row[f] for f in HASHED_FIELDS],
                      separators=(",", ":"), ensure_ascii=False)  # fmt: skip
    return sm3_hex(bytes.fromhex(prev_hash) + body.encode())


def checkpoint_payload(seq: int, head_hash: str, ts: str) -> bytes:
    """The exact bytes an SM2 checkpoint signature covers."""
    return f"govctl-audit-checkpoint/1|{seq}|{head_hash}|{ts}".encode()


external_anchors = Table(
    "audit_external_anchors", metadata,
    Column("id", String(96), primary_key=True), Column("seq", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False), Column("kind", String(32), nullable=False),
    Column("ts", String(32), nullable=False), Column("evidence", Text, nullable=False),
)  # fmt: skip


def rotation_statement(old_key_id: str, new_public_hex: str, ts: str) -> bytes:
    """The bytes the old platform key signs to hand the ledger over to a new key."""
    return canonical_json({"govctl": "key-rotation/1", "old_key_id": old_key_id, "new_public_key": new_public_hex, "ts": ts}).encode()
