"""The bastion's tables: people's SSH keys, asset grants, sessions and their commands, locks."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text

from control_plane.db import metadata

keys = Table(
    "bastion_keys", metadata,
    Column("fingerprint", String(80), primary_key=True), Column("user", String(64), nullable=False, index=True),
    Column("public_key", Text, nullable=False), Column("comment", String(200), nullable=False, default=""),
    Column("added", String(32), nullable=False), Column("op_id", String(32), nullable=False, default=""),
)  # fmt: skip
grants = Table(
    "bastion_grants", metadata,
    Column("id", String(16), primary_key=True), Column("user", String(64), nullable=False, index=True),
    Column("hosts", Text, nullable=False),  # JSON list: host names, "pool:<role>", "stack:<name>" or "*"
    Column("account", String(32), nullable=False), Column("valid_from", String(32), nullable=False),
    Column("valid_to", String(32), nullable=False), Column("reason", Text, nullable=False, default=""),
    Column("created", String(32), nullable=False), Column("op_id", String(32), nullable=False, default=""),
    Column("revoked", String(32)),
)  # fmt: skip
sessions = Table(
    "bastion_sessions", metadata,
    Column("id", String(24), primary_key=True), Column("user", String(64), nullable=False, index=True),
    Column("host", String(64), nullable=False), Column("account", String(32), nullable=False),
    Column("kind", String(8), nullable=False),  # shell | exec | sftp
    Column("source", String(64), nullable=False), Column("started", String(32), nullable=False),
    Column("ended", String(32)), Column("end_reason", String(64)), Column("recording", Text, nullable=False, default=""),
    Column("final_sm3", String(64)), Column("chunks", Integer, nullable=False, default=0),
    Column("commands", Integer, nullable=False, default=0), Column("gateway", String(64), nullable=False, default=""),
    Column("kill_requested", String(32)),
)  # fmt: skip
locks = Table(
    "bastion_locks", metadata,
    Column("user", String(64), primary_key=True), Column("since", String(32), nullable=False),
    Column("by", String(64), nullable=False), Column("reason", Text, nullable=False, default=""),
)  # fmt: skip
