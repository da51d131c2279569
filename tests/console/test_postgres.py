"""The same console queries on PostgreSQL (production), over the same real conversations.

The scripted conversations' rows are copied from the stack's SQLite database into a schema of their own in
postgresql://postgres@127.0.0.1:5432/test (TEST_POSTGRES_URL), which is dropped afterwards; nothing else in
that database is touched. These tests fail, not skip, when PostgreSQL is not running.
"""
from __future__ import annotations

import os
import uuid
from datetime import timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert, select, text

from clinicbot.console.export import Exporter
from clinicbot.storage import (
    ConsoleStore,
    bookings,
    feedback,
    handoffs,
    tracker_events,
    tracker_metadata,
    triage_events,
    utcnow,
)
from console_helpers import upgrade_creates_the_model
from query_checks import ALL, check_all
from scripted_patients import BOOKING_NAME, BOOKING_PHONE, FREE_TEXT_EMAIL

pytestmark = pytest.mark.postgres

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PROJECT_TABLES = (bookings, triage_events, handoffs, feedback)


def schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def new_schema():
    """Makes empty schemas with unique names; drops exactly those at the end."""
    admin = create_engine(POSTGRES_URL, future=True, connect_args={"connect_timeout": 5})
    made = []

    def make() -> str:
        schema = f"console_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:  # raises (test fails) when PostgreSQL is down
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        return schema_url(schema)

    yield make
    with admin.begin() as connection:
        for schema in made:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def copy_to_postgres(url: str, source_store: ConsoleStore, senders) -> ConsoleStore:
    """The scripted conversations' tracker events and project rows, copied into an empty schema."""
    store = ConsoleStore(url)
    assert store.engine.dialect.name == "postgresql"
    store.ensure_schema()
    tracker_metadata.create_all(store.engine)
    senders = list(senders)
    with source_store.engine.connect() as source, store.engine.begin() as target:
        events = source.execute(
            select(tracker_events).where(tracker_events.c.sender_id.in_(senders)).order_by(tracker_events.c.id)
        ).all()
        target.execute(insert(tracker_events), [{k: v for k, v in row._mapping.items() if k != "id"} for row in events])
        for table in PROJECT_TABLES:
            rows = [dict(row._mapping) for row in source.execute(select(table).where(table.c.conversation_id.in_(senders)))]
            for row in rows:
                row["created_at"] = row["created_at"].replace(tzinfo=timezone.utc)  # SQLite keeps UTC wall time
            if rows:
                target.execute(insert(table), rows)
    return store


@pytest.fixture(scope="module")
def pg_store(new_schema, console_store, conversations) -> ConsoleStore:
    return copy_to_postgres(new_schema(), console_store, conversations.values())


def test_postgres_queries_give_the_expected_answers(pg_store, conversations):
    check_all(pg_store, conversations)


def test_postgres_and_sqlite_list_the_same_conversations_with_the_same_flags(pg_store, console_store, conversations):
    from clinicbot.storage import ConversationFilter

    ours = set(conversations.values())
    keys = ("conversation_id", "turns", "red_flag_level", "bookings", "fallbacks", "negative_feedback", "handoffs", "channel", "started", "last_activity")

    def listed(store):
        rows, _ = store.list_conversations(ConversationFilter(limit=ALL))
        return sorted((tuple(row[k] for k in keys) for row in rows if row["conversation_id"] in ours))

    assert listed(pg_store) == listed(console_store)


def test_postgres_status_change_persists(pg_store, conversations, console_settings):
    item = next(i for i in pg_store.queue_items() if i["conversation_id"] == conversations["booking"] and i["kind"] == "booking")
    pg_store.set_status("booking", item["id"], "scheduled", changed_by="pg-tester")
    fresh = ConsoleStore(pg_store.database_url)
    stored = fresh.queue_item("booking", item["id"])
    assert stored["status"] == "scheduled" and stored["history"][-1]["changed_by"] == "pg-tester"
    assert stored["history"][-1]["changed_at"].tzinfo is not None


def test_postgres_export_is_redacted(pg_store, conversations, console_settings):
    now = utcnow()
    exporter = Exporter(pg_store, console_settings.console_secret, identifiable=False)
    body = exporter.export("messages", now - timedelta(days=1), now + timedelta(days=1))
    body += exporter.export("queue", now - timedelta(days=1), now + timedelta(days=1))
    assert "tingling" in body
    for value in (BOOKING_NAME, BOOKING_PHONE, FREE_TEXT_EMAIL, conversations["booking"]):
        assert value not in body


def test_postgres_retention_deletes_only_old_conversations(new_schema, console_store, conversations):
    pg_store = copy_to_postgres(new_schema(), console_store, conversations.values())
    old = conversations["fallback"]
    with pg_store.engine.begin() as connection:  # set-up: make one conversation 40 days old
        connection.execute(
            tracker_events.update().where(tracker_events.c.sender_id == old).values(timestamp=tracker_events.c.timestamp - 40 * 86400)
        )
    before = {s: len(pg_store.conversation_events(s)) for s in conversations.values()}
    counts = pg_store.delete_conversations_inactive_since(utcnow() - timedelta(days=30))
    assert counts["conversations"] == 1 and counts["events"] == before[old]
    after = {s: len(pg_store.conversation_events(s)) for s in conversations.values()}
    assert after == dict(before, **{old: 0})


def test_alembic_upgrade_head_on_an_empty_postgres_schema(new_schema):
    upgrade_creates_the_model(new_schema())
