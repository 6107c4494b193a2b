"""Security: enrolment codes and TOTP for users, failed-authentication throttling, external audit anchors.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the users' enrolment and second-factor columns, the failure log and the external anchors."""
    with op.batch_alter_table("iam_users") as b:
        b.add_column(sa.Column("department", sa.String(64), nullable=False, server_default=""))
        b.add_column(sa.Column("enrol_sm3", sa.String(64)))
        b.add_column(sa.Column("enrol_expires", sa.String(32)))
        b.add_column(sa.Column("enrolled", sa.String(32)))
        b.add_column(sa.Column("totp_secret", sa.Text))
        b.add_column(sa.Column("totp_pending", sa.Text))
        b.add_column(sa.Column("totp_last_step", sa.BigInteger))
    op.create_table(
        "iam_auth_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(160), nullable=False, index=True),
        sa.Column("ts", sa.String(32), nullable=False),
    )
    op.create_table(
        "audit_external_anchors",
        sa.Column("id", sa.String(96), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_table("audit_external_anchors")
    op.drop_table("iam_auth_failures")
    with op.batch_alter_table("iam_users") as b:
        for c in ("totp_last_step", "totp_pending", "totp_secret", "enrolled", "enrol_expires", "enrol_sm3", "department"):
            b.drop_column(c)
