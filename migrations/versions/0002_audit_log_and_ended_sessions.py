"""The console's audit trail, audit_log (append-only; retention never deletes it), ended_sessions (sign-out
ends a session server-side), and the roles front_desk / clinician / admin: the old "staff" role becomes front_desk
(it saw every transcript; transcripts are for clinicians now, see docs/console.md).

Like 0001, creates a table only when it is missing: Store.ensure_schema() may have created it already.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("username", sa.String(100)),
            sa.Column("role", sa.String(20)),
            sa.Column("action", sa.String(40), nullable=False),
            sa.Column("target", sa.String(255)),
            sa.Column("detail", sa.Text()),
            sa.Column("address", sa.String(64)),
        )
        op.create_index("ix_audit_log_at", "audit_log", ["at"])
    if "ended_sessions" not in existing:
        op.create_table(
            "ended_sessions",
            sa.Column("session_key", sa.String(64), primary_key=True),
            sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_ended_sessions_ended_at", "ended_sessions", ["ended_at"])
    op.execute("UPDATE staff_users SET role = 'front_desk' WHERE role = 'staff'")


def downgrade() -> None:
    op.execute("UPDATE staff_users SET role = 'staff' WHERE role = 'front_desk'")
    op.drop_table("ended_sessions")
    op.drop_table("audit_log")
