"""SOC: synthetic coverage events and whether each raised its alert.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the synthetic-events table."""
    op.create_table(
        "soc_synthetic",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("rule_id", sa.String(64), nullable=False, index=True),
        sa.Column("injected", sa.String(32), nullable=False),
        sa.Column("checked", sa.String(32)),
        sa.Column("ok", sa.Boolean),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("soc_synthetic")
