"""Retention: `python -m clinicbot.console.retention --days N` deletes whole conversations last active more than
N days ago, and nothing else. Runs on a copy of the stack's database in which some real conversations are
made old by moving their timestamps back."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Dict

import pytest
from sqlalchemy import delete, func, select, update

from clinicbot.settings import PROJECT_ROOT
from clinicbot.storage import (
    ConsoleStore,
    bookings,
    feedback,
    handoffs,
    status_changes,
    tracker_events,
    triage_events,
)

DAY = 86400.0
PROJECT_TABLES = (bookings, triage_events, handoffs, feedback)


def age(store: ConsoleStore, sender: str, days: int, events: bool = True, tables=PROJECT_TABLES) -> None:
    """Move a conversation `days` into the past (test set-up: the code under test only reads timestamps)."""
    with store.engine.begin() as connection:
        if events:
            connection.execute(
                update(tracker_events)
                .where(tracker_events.c.sender_id == sender)
                .values(timestamp=tracker_events.c.timestamp - days * DAY)
            )
        for table in tables:
            for row_id, created_at in connection.execute(
                select(table.c.id, table.c.created_at).where(table.c.conversation_id == sender)
            ).all():
                connection.execute(
                    update(table).where(table.c.id == row_id).values(created_at=created_at - timedelta(days=days))
                )


def event_counts(store: ConsoleStore) -> Dict[str, int]:
    with store.engine.connect() as connection:
        return dict(
            connection.execute(select(tracker_events.c.sender_id, func.count()).group_by(tracker_events.c.sender_id)).all()
        )


def rows_for(store: ConsoleStore, table, sender: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table).where(table.c.conversation_id == sender)).scalar_one()


def retention(database_url: str, *args: str, retention_days: str = "") -> str:
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(PROJECT_ROOT), RETENTION_DAYS=retention_days)
    env.pop("TRACKER_STORE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "clinicbot.console.retention", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def old_and_new(tmp_path: Path, stack_env, conversations):
    """A copy of the stack's database with: emergency 40 days old, urgent 20 days old, the booking's row
    40 days old but its conversation active today, and the handoff's tracker events already gone (row 40 days old)."""
    source = stack_env["DATABASE_URL"][len("sqlite:///"):]
    target = tmp_path / "copy.db"
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)  # consistent copy, WAL included
    url = f"sqlite:///{target}"
    store = ConsoleStore(url)
    emergency_item = next(i for i in store.queue_items() if i["conversation_id"] == conversations["emergency"])
    store.set_status("triage", emergency_item["id"], "contacted", changed_by="tester")
    age(store, conversations["emergency"], 40)
    age(store, conversations["urgent"], 20)
    age(store, conversations["booking"], 40, events=False, tables=(bookings,))
    age(store, conversations["handoff"], 40, events=False, tables=(handoffs,))
    with store.engine.begin() as connection:
        connection.execute(delete(tracker_events).where(tracker_events.c.sender_id == conversations["handoff"]))
    return url, store, emergency_item["id"]


def test_retention_deletes_only_conversations_inactive_for_longer_than_n_days(old_and_new, conversations):
    url, store, emergency_triage_id = old_and_new
    store.record_audit("transcript", "a-clinician", "clinician", target=conversations["emergency"])
    audit_before = store.audit_entries(limit=100000)
    before = event_counts(store)

    dry = retention(url, "--days", "30", "--dry-run")
    assert dry.startswith("Would delete 2 conversation(s)"), dry
    assert event_counts(store) == before

    out = retention(url, "--days", "30")
    assert out.startswith("Deleted 2 conversation(s)"), out
    after = event_counts(store)

    # 40 days old: everything of that conversation is gone, status history included.
    assert conversations["emergency"] not in after
    assert rows_for(store, triage_events, conversations["emergency"]) == 0
    with store.engine.connect() as connection:
        history = connection.execute(
            select(func.count()).select_from(status_changes).where(
                status_changes.c.item_kind == "triage", status_changes.c.item_id == emergency_triage_id
            )
        ).scalar_one()
    assert history == 0
    # Tracker events already gone, project row 40 days old: the row goes too.
    assert rows_for(store, handoffs, conversations["handoff"]) == 0

    # 20 days old: kept whole.
    assert after[conversations["urgent"]] == before[conversations["urgent"]]
    assert rows_for(store, triage_events, conversations["urgent"]) == 1
    # An old booking in a conversation that is active today: kept, because the conversation is.
    assert after[conversations["booking"]] == before[conversations["booking"]]
    assert rows_for(store, bookings, conversations["booking"]) == 1
    # Nothing else changed.
    assert {k: v for k, v in after.items()} == {k: v for k, v in before.items() if k != conversations["emergency"]}

    # The audit trail is never deleted, not even the entries about a deleted conversation.
    assert store.audit_entries(limit=100000) == audit_before

    # Idempotent.
    assert retention(url, "--days", "30").startswith("Deleted 0 conversation(s)")


def test_retention_default_comes_from_settings(old_and_new, conversations):
    url, store, _ = old_and_new
    out = retention(url, "--dry-run")  # RETENTION_DAYS unset: 365 days, nothing here is that old
    assert out.startswith("Would delete 0 conversation(s)"), out
    out = retention(url, "--dry-run", retention_days="30")
    assert out.startswith("Would delete 2 conversation(s)"), out
    out = retention(url, "--dry-run", retention_days="10")
    assert out.startswith("Would delete 3 conversation(s)"), out  # the 20-day-old one too
    assert "--days" in subprocess.run(
        [sys.executable, "-m", "clinicbot.console.retention", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    ).stdout
