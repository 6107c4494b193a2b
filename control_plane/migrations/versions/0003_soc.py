"""SOC: per-rule detection checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the detection state table."""
    op.create_table(
        "soc_rule_state",
        sa.Column("rule_id", sa.String(64), primary_key=True),
        sa.Column("last_end", sa.String(32), nullable=False),
        sa.Column("last_run", sa.String(32), nullable=False),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("behind_s", sa.Float, nullable=False, server_default="0"),
        sa.Column("gaps_filled", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("soc_rule_state")
