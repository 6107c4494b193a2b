"""Reports: immutable revisions per month, and the delivery outbox with receipts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the report tables."""
    op.create_table(
        "report_revisions",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("revision", sa.Integer, primary_key=True),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("built_by", sa.String(128), nullable=False),
        sa.Column("digest_sm3", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("signoff", sa.Text),
        sa.Column("coverage_pct", sa.Float),
    )
    op.create_table(
        "report_deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("next_attempt", sa.String(32), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("receipt", sa.Text),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("updated", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("report_deliveries")
    op.drop_table("report_revisions")
