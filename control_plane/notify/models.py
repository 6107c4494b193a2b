"""The notification tables: who wants which kinds by e-mail, and every message with its deliveries."""

from __future__ import annotations

from sqlalchemy import Column, String, Table, Text

from control_plane.db import metadata

subscriptions = Table(
    "notify_subscriptions", metadata,
    Column("user", String(64), primary_key=True), Column("kinds", Text, nullable=False),
    Column("email", String(254), nullable=False), Column("updated", String(32), nullable=False),
)  # fmt: skip
messages = Table(
    "notify_messages", metadata,
    Column("id", String(80), primary_key=True), Column("kind", String(32), nullable=False),
    Column("subject", Text, nullable=False), Column("body", Text, nullable=False), Column("ref", String(128), nullable=False),
    Column("created", String(32), nullable=False), Column("acked", String(32)), Column("acked_by", String(64)),
    Column("escalated", String(32)), Column("deliveries", Text, nullable=False),
)  # fmt: skip
