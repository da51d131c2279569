"""Initial schema: bookings, triage_events, handoffs, feedback, staff_users, status_changes.

Creates only the tables that are missing: the action server and the console call
Store.ensure_schema(), which may already have created them on a fresh database. From here on
every change to an existing table is a new migration (`alembic revision --autogenerate`).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ("bookings", "triage_events", "handoffs", "feedback", "staff_users", "status_changes")


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    if "bookings" not in existing:
        op.create_table(
            "bookings",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("reference", sa.String(16), nullable=False, unique=True),
            sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
            sa.Column("conversation_id", sa.String(255), nullable=False),
            sa.Column("channel", sa.String(50)),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("contact", sa.String(200), nullable=False),
            sa.Column("contact_kind", sa.String(10), nullable=False),
            sa.Column("visit_type", sa.String(20), nullable=False),
            sa.Column("preferred_times", sa.String(500)),
            sa.Column("reason", sa.Text()),
            sa.Column("triage_level", sa.String(12), nullable=False),
            sa.Column("consent", sa.Boolean(), nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_bookings_conversation_id", "bookings", ["conversation_id"])

    if "triage_events" not in existing:
        op.create_table(
            "triage_events",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("conversation_id", sa.String(255), nullable=False),
            sa.Column("channel", sa.String(50)),
            sa.Column("level", sa.String(12), nullable=False),
            sa.Column("rule", sa.String(100)),
            sa.Column("matched", sa.Text(), nullable=False),
            sa.Column("message_timestamp", sa.Float()),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_triage_events_conversation_id", "triage_events", ["conversation_id"])
        op.create_index("ix_triage_events_level", "triage_events", ["level"])

    if "handoffs" not in existing:
        op.create_table(
            "handoffs",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("conversation_id", sa.String(255), nullable=False),
            sa.Column("channel", sa.String(50)),
            sa.Column("note", sa.Text()),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_handoffs_conversation_id", "handoffs", ["conversation_id"])

    if "feedback" not in existing:
        op.create_table(
            "feedback",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("conversation_id", sa.String(255), nullable=False),
            sa.Column("topic", sa.String(100), nullable=False),
            sa.Column("helpful", sa.Boolean(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_feedback_conversation_id", "feedback", ["conversation_id"])
        op.create_index("ix_feedback_topic", "feedback", ["topic"])

    if "staff_users" not in existing:
        op.create_table(
            "staff_users",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("username", sa.String(100), nullable=False, unique=True),
            sa.Column("password_hash", sa.String(300), nullable=False),
            sa.Column("role", sa.String(20), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        )

    if "status_changes" not in existing:
        op.create_table(
            "status_changes",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("item_kind", sa.String(20), nullable=False),
            sa.Column("item_id", sa.Integer(), nullable=False),
            sa.Column("old_status", sa.String(20)),
            sa.Column("new_status", sa.String(20), nullable=False),
            sa.Column("changed_by", sa.String(100), nullable=False),
            sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    # Only the project's tables; Rasa's `events` stays.
    for table in reversed(TABLES):
        op.drop_table(table)
