"""Departments' requested hosts (申请 → 审批 → 开通 → 回收): deploy_allocations, and departments' answers to reclamation requests.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create deploy_allocations, deploy_reclaim_answers and deploy_quotas."""
    op.create_table(
        "deploy_allocations",
        sa.Column("id", sa.String(40), primary_key=True), sa.Column("department", sa.String(64), nullable=False, index=True),
        sa.Column("stack", sa.String(64), nullable=False), sa.Column("pool", sa.String(16), nullable=False), sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("tier", sa.String(8), nullable=False), sa.Column("vcpu", sa.Integer, nullable=False), sa.Column("memory_gib", sa.Integer, nullable=False),
        sa.Column("storage_gib", sa.Integer, nullable=False), sa.Column("expires", sa.String(10), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False), sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("op_id", sa.String(40), nullable=False), sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created", sa.String(32), nullable=False), sa.Column("updated", sa.String(32), nullable=False),
    )  # fmt: skip
    op.create_table(
        "deploy_reclaim_answers",
        sa.Column("op_id", sa.String(40), primary_key=True), sa.Column("allocation", sa.String(40), nullable=False),
        sa.Column("answer", sa.String(16), nullable=False), sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("by", sa.String(64), nullable=False), sa.Column("at", sa.String(32), nullable=False),
    )  # fmt: skip


    op.create_table(
        "deploy_quotas",
        sa.Column("department", sa.String(64), primary_key=True), sa.Column("pool", sa.String(16), primary_key=True),
        sa.Column("vcpu", sa.Integer, nullable=False), sa.Column("memory_gib", sa.Integer, nullable=False),
        sa.Column("storage_gib", sa.Integer, nullable=False), sa.Column("hosts", sa.Integer, nullable=False),
        sa.Column("by", sa.String(64), nullable=False), sa.Column("op_id", sa.String(40), nullable=False), sa.Column("updated", sa.String(32), nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    """Drop them."""
    op.drop_table("deploy_quotas")
    op.drop_table("deploy_reclaim_answers")
    op.drop_table("deploy_allocations")
