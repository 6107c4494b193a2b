"""SOC: rule exceptions with owner, reason and expiry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the exceptions table."""
    op.create_table(
        "soc_exceptions",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("match", sa.Text, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("expires", sa.String(32), nullable=False),
        sa.Column("created", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("revoked", sa.String(32)),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("soc_exceptions")
