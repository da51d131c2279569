"""Alembic: `alembic upgrade head` on an empty database creates exactly the tables of clinicbot.storage.metadata."""
from __future__ import annotations

import sqlite3

from clinicbot.storage import ConsoleStore, Store
from console_helpers import alembic, schema_difference, upgrade_creates_the_model


def test_upgrade_head_on_an_empty_sqlite_file_creates_the_same_tables(tmp_path):
    upgrade_creates_the_model(f"sqlite:///{tmp_path / 'empty.db'}")


def test_upgrade_head_on_a_database_the_app_already_created(tmp_path):
    """The action server creates missing tables itself (ensure_schema); the first migration then adopts them."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    Store(url).ensure_schema()
    alembic(url, "upgrade", "head")
    assert schema_difference(url)[0] == []


def test_a_database_of_the_previous_version_upgrades_and_its_staff_become_front_desk(tmp_path):
    """A database at revision 0001 with a "staff" account (the role before the split) upgrades to head."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    alembic(url, "upgrade", "0001")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute(
            "INSERT INTO staff_users (username, password_hash, role, created_at) VALUES ('old-staff', 'x', 'staff', '2026-01-01 00:00:00.000000')"
        )

    alembic(url, "upgrade", "head")

    assert schema_difference(url)[0] == []
    assert ConsoleStore(url).get_staff_user("old-staff")["role"] == "front_desk"
    assert "0002 (head)" in alembic(url, "current").stdout


def test_alembic_leaves_rasa_events_alone(stack_env, conversations, tmp_path):
    """A copy of a real database with Rasa's `events`: autogenerate sees nothing to do, downgrade keeps events."""
    target = tmp_path / "copy.db"
    with sqlite3.connect(stack_env["DATABASE_URL"][len("sqlite:///"):]) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    url = f"sqlite:///{target}"
    alembic(url, "upgrade", "head")
    alembic(url, "check")  # "No new upgrade operations detected": events is not in the model and is ignored
    alembic(url, "downgrade", "base")
    assert "events" in schema_difference(url)[1]
