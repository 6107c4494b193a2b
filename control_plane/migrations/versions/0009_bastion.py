"""The bastion: people's SSH keys, asset grants, sessions, locks.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the bastion's tables."""
    op.create_table(
        "bastion_keys",
        sa.Column("fingerprint", sa.String(80), primary_key=True), sa.Column("user", sa.String(64), nullable=False, index=True),
        sa.Column("public_key", sa.Text, nullable=False), sa.Column("comment", sa.String(200), nullable=False),
        sa.Column("added", sa.String(32), nullable=False), sa.Column("op_id", sa.String(32), nullable=False),
    )  # fmt: skip
    op.create_table(
        "bastion_grants",
        sa.Column("id", sa.String(16), primary_key=True), sa.Column("user", sa.String(64), nullable=False, index=True),
        sa.Column("hosts", sa.Text, nullable=False), sa.Column("account", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.String(32), nullable=False), sa.Column("valid_to", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False), sa.Column("created", sa.String(32), nullable=False),
        sa.Column("op_id", sa.String(32), nullable=False), sa.Column("revoked", sa.String(32)),
    )  # fmt: skip
    op.create_table(
        "bastion_sessions",
        sa.Column("id", sa.String(24), primary_key=True), sa.Column("user", sa.String(64), nullable=False, index=True),
        sa.Column("host", sa.String(64), nullable=False), sa.Column("account", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False), sa.Column("source", sa.String(64), nullable=False),
        sa.Column("started", sa.String(32), nullable=False), sa.Column("ended", sa.String(32)), sa.Column("end_reason", sa.String(64)),
        sa.Column("recording", sa.Text, nullable=False), sa.Column("final_sm3", sa.String(64)),
        sa.Column("chunks", sa.Integer, nullable=False), sa.Column("commands", sa.Integer, nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False), sa.Column("kill_requested", sa.String(32)),
    )  # fmt: skip
    op.create_table(
        "bastion_locks",
        sa.Column("user", sa.String(64), primary_key=True), sa.Column("since", sa.String(32), nullable=False),
        sa.Column("by", sa.String(64), nullable=False), sa.Column("reason", sa.Text, nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    """Drop the bastion's tables."""
    for t in ("bastion_locks", "bastion_sessions", "bastion_grants", "bastion_keys"):
        op.drop_table(t)
