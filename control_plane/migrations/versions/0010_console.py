"""The console: people's passwords (with history), browser sessions, notification subscriptions and deliveries.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add password columns to iam_users; create the console's tables."""
    with op.batch_alter_table("iam_users") as b:
        b.add_column(sa.Column("password_hash", sa.Text))
        b.add_column(sa.Column("password_history", sa.Text))
        b.add_column(sa.Column("password_changed", sa.String(32)))
    op.create_table(
        "console_sessions",
        sa.Column("id_sm3", sa.String(64), primary_key=True), sa.Column("user", sa.String(64), nullable=False, index=True),
        sa.Column("csrf", sa.String(64), nullable=False), sa.Column("source", sa.String(64), nullable=False),
        sa.Column("created", sa.String(32), nullable=False), sa.Column("last_seen", sa.String(32), nullable=False),
        sa.Column("expires", sa.String(32), nullable=False), sa.Column("ended", sa.String(32)), sa.Column("lang", sa.String(8), nullable=False),
    )  # fmt: skip
    op.create_table(
        "notify_subscriptions",
        sa.Column("user", sa.String(64), primary_key=True), sa.Column("kinds", sa.Text, nullable=False),
        sa.Column("email", sa.String(254), nullable=False), sa.Column("updated", sa.String(32), nullable=False),
    )  # fmt: skip
    op.create_table(
        "notify_messages",
        sa.Column("id", sa.String(80), primary_key=True), sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False), sa.Column("body", sa.Text, nullable=False), sa.Column("ref", sa.String(128), nullable=False),
        sa.Column("created", sa.String(32), nullable=False), sa.Column("acked", sa.String(32)), sa.Column("acked_by", sa.String(64)),
        sa.Column("escalated", sa.String(32)), sa.Column("deliveries", sa.Text, nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    """Drop the console's tables and the password columns."""
    for t in ("notify_messages", "notify_subscriptions", "console_sessions"):
        op.drop_table(t)
    with op.batch_alter_table("iam_users") as b:
        for c in ("password_changed", "password_history", "password_hash"):
            b.drop_column(c)
