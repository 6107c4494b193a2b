"""Drills name the registered system they were judged against, the drill plan they fulfil and who approved them (the sign-off).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add system, plan and approvers to dr_drills."""
    with op.batch_alter_table("dr_drills") as b:
        b.add_column(sa.Column("system", sa.String(64)))
        b.add_column(sa.Column("plan", sa.String(64)))
        b.add_column(sa.Column("approvers", sa.Text))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("dr_drills") as b:
        b.drop_column("approvers")
        b.drop_column("plan")
        b.drop_column("system")
