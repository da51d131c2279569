"""Helpers for the console tests (imported by name: tests/console is on sys.path under pytest)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sanic import Sanic
from sanic_testing.testing import SanicASGITestClient

from clinicbot.console.app import console_blueprint
from sqlalchemy import inspect

from clinicbot.settings import PROJECT_ROOT, Settings
from clinicbot.storage import ConsoleStore, make_engine, metadata

PASSWORD = "correct horse battery staple"


def make_app(store: ConsoleStore, settings: Settings) -> Sanic:
    app = Sanic(f"console_test_{uuid.uuid4().hex[:10]}")
    app.blueprint(console_blueprint(store=store, settings=settings))
    return app


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


async def sign_in(client: SanicASGITestClient, username: str, password: str, next_url: str = "/console/conversations"):
    _, page = await client.get("/console/login")
    assert page.status_code == 200
    _, response = await client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text), "next": next_url},
    )
    return response


# -- Alembic -------------------------------------------------------------------------------------------
ALEMBIC = str(Path(sys.executable).parent / "alembic")


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=database_url)
    result = subprocess.run([ALEMBIC, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def schema_difference(database_url: str):
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata), set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def upgrade_creates_the_model(database_url: str) -> None:
    alembic(database_url, "upgrade", "head")
    difference, tables = schema_difference(database_url)
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert difference == [], difference  # same columns, types, nullability, indexes, unique keys
    assert "0002 (head)" in alembic(database_url, "current").stdout
    alembic(database_url, "downgrade", "base")
    assert schema_difference(database_url)[1] == {"alembic_version"}
