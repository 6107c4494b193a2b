"""What departments hold in the stacks: hosts they requested and the bureau approved (the Pulumi program builds them)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text

from control_plane.db import metadata

allocations = Table(
    "deploy_allocations", metadata,
    Column("id", String(40), primary_key=True), Column("department", String(64), nullable=False, index=True),
    Column("stack", String(64), nullable=False), Column("pool", String(16), nullable=False), Column("slot", Integer, nullable=False),
    Column("tier", String(8), nullable=False), Column("vcpu", Integer, nullable=False), Column("memory_gib", Integer, nullable=False),
    Column("storage_gib", Integer, nullable=False), Column("expires", String(10), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # active, returned, failed
    Column("requested_by", String(64), nullable=False), Column("op_id", String(40), nullable=False), Column("reason", Text, nullable=False, default=""),
    Column("created", String(32), nullable=False), Column("updated", String(32), nullable=False),
)  # fmt: skip

reclaim_answers = Table(
    "deploy_reclaim_answers", metadata,
    Column("op_id", String(40), primary_key=True), Column("allocation", String(40), nullable=False),
    Column("answer", String(16), nullable=False),  # confirm (give it back) or justify (keep it, and why)
    Column("note", Text, nullable=False, default=""), Column("by", String(64), nullable=False), Column("at", String(32), nullable=False),
)  # fmt: skip

quotas = Table(
    "deploy_quotas", metadata,  # a quota the bureau changed through the gate (resource.quota); it overrides the registry's
    Column("department", String(64), primary_key=True), Column("pool", String(16), primary_key=True),
    Column("vcpu", Integer, nullable=False), Column("memory_gib", Integer, nullable=False), Column("storage_gib", Integer, nullable=False),
    Column("hosts", Integer, nullable=False), Column("by", String(64), nullable=False), Column("op_id", String(40), nullable=False),
    Column("updated", String(32), nullable=False),
)  # fmt: skip
