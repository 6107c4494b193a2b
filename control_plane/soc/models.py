"""The SOC engine's tables in the state DB: each rule's detection checkpoint, the self-check's synthetic events."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, String, Table, Text

from control_plane.db import metadata

rule_state = Table(
    "soc_rule_state", metadata,
    Column("rule_id", String(64), primary_key=True), Column("last_end", String(32), nullable=False),
    Column("last_run", String(32), nullable=False), Column("last_error", Text, nullable=False, default=""),
    Column("behind_s", Float, nullable=False, default=0.0), Column("gaps_filled", Integer, nullable=False, default=0),
)  # fmt: skip
synthetic = Table(
    "soc_synthetic", metadata,
    Column("event_id", String(64), primary_key=True), Column("rule_id", String(64), nullable=False),
    Column("injected", String(32), nullable=False), Column("checked", String(32)), Column("ok", Boolean),
)  # fmt: skip
