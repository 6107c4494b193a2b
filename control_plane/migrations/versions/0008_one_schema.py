"""One schema: operations carry their typed origin; the scheduler's job store and the drill index are migrations too.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add gate_operations.origin; create apscheduler_jobs and dr_drills unless an older process already made them."""
    with op.batch_alter_table("gate_operations") as b:
        b.add_column(sa.Column("origin", sa.Text, nullable=False, server_default=""))
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "apscheduler_jobs" not in have:
        op.create_table(
            "apscheduler_jobs",
            sa.Column("id", sa.Unicode(191), primary_key=True),
            sa.Column("next_run_time", sa.Float(25), index=True),
            sa.Column("job_state", sa.LargeBinary, nullable=False),
        )
    if "dr_drills" not in have:
        op.create_table(
            "dr_drills",
            sa.Column("id", sa.String(32), primary_key=True), sa.Column("started", sa.String(40), nullable=False),
            sa.Column("stack", sa.String(64), nullable=False), sa.Column("rpo_s", sa.Float), sa.Column("rto_s", sa.Float),
            sa.Column("status", sa.String(24), nullable=False), sa.Column("path", sa.Text, nullable=False),
            sa.Column("cleaned", sa.String(40)),
        )  # fmt: skip


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_table("dr_drills")
    op.drop_table("apscheduler_jobs")
    with op.batch_alter_table("gate_operations") as b:
        b.drop_column("origin")
