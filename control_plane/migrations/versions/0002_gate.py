"""Operation gate: users, tokens, operations, approvals, after-the-fact reviews.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the gate's tables."""
    op.create_table(
        "iam_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "iam_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("secret_sm3", sa.String(64), nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("expires", sa.String(32), nullable=False),
        sa.Column("revoked", sa.String(32)),
        sa.Column("description", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_iam_tokens_user", "iam_tokens", ["user"])
    op.create_table(
        "gate_operations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("approvals_needed", sa.Integer, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("soc", sa.Text, nullable=False),
        sa.Column("preview", sa.Text, nullable=False, server_default=""),
        sa.Column("result", sa.Text, nullable=False, server_default=""),
        sa.Column("break_glass", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("expires", sa.String(32), nullable=False),
        sa.Column("updated", sa.String(32), nullable=False),
    )
    op.create_index("ix_gate_operations_status", "gate_operations", ["status", "created"])
    op.create_table(
        "gate_approvals",
        sa.Column("op_id", sa.String(32), primary_key=True),
        sa.Column("approver", sa.String(64), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("expires", sa.String(32), nullable=False),
    )
    op.create_table(
        "gate_reviews",
        sa.Column("op_id", sa.String(32), primary_key=True),
        sa.Column("opened", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(64)),
        sa.Column("verdict", sa.Text),
        sa.Column("closed", sa.String(32)),
        sa.Column("alert_sent", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    """Drop the gate's tables."""
    for t in ("gate_reviews", "gate_approvals", "gate_operations", "iam_tokens", "iam_users"):
        op.drop_table(t)
