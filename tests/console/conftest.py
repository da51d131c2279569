"""Console fixtures: real conversations through the trained bot (the `stack` fixture), in the stack's
SQLite database, read by the console in-process through Sanic's ASGI test client."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Dict, Tuple

import pytest
from sanic_testing.testing import SanicASGITestClient

from clinicbot.console.auth import hash_password
from clinicbot.settings import Settings, load_settings
from clinicbot.storage import ConsoleStore
from console_helpers import PASSWORD, make_app, sign_in
from scripted_patients import run_conversations


@pytest.fixture(scope="session")
def conversations(stack) -> Dict[str, str]:
    """label -> sender id of each scripted conversation (tests/console/scripted_patients.py)."""
    return run_conversations(stack.rasa_url)


@pytest.fixture(scope="session")
def console_store(stack_env, conversations) -> ConsoleStore:
    return ConsoleStore(stack_env["DATABASE_URL"])


@pytest.fixture(scope="session")
def console_settings(stack_env) -> Settings:
    url = stack_env["DATABASE_URL"]
    return dataclasses.replace(
        load_settings(), database_url=url, tracker_store_url=url, console_secret=stack_env["CONSOLE_SECRET"],
        console_session_minutes=60,
    )


@pytest.fixture(scope="session")
def accounts(console_store) -> Dict[str, Tuple[str, str]]:
    """role -> (user name, password); the hashes are made exactly as the users CLI makes them."""
    made = {}
    for role in ("front_desk", "clinician", "admin"):
        name = f"{role}-{uuid.uuid4().hex[:6]}"
        console_store.create_staff_user(name, hash_password(PASSWORD), role)
        made[role] = (name, PASSWORD)
    return made


@pytest.fixture
def console_app(console_store, console_settings):
    """A fresh console (fresh rate limiter) over the stack's database."""
    return make_app(console_store, console_settings)


@pytest.fixture
def client(console_app) -> SanicASGITestClient:
    return SanicASGITestClient(console_app)


@pytest.fixture
async def front_desk_client(client, accounts) -> SanicASGITestClient:
    response = await sign_in(client, *accounts["front_desk"])
    assert response.status_code == 302, response.text
    return client


async def signed_in(console_app, accounts, role: str) -> SanicASGITestClient:
    """A client of its own (own cookies), signed in with the account of `role`."""
    client = SanicASGITestClient(console_app)
    response = await sign_in(client, *accounts[role])
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
async def clinician_client(console_app, accounts) -> SanicASGITestClient:
    return await signed_in(console_app, accounts, "clinician")


@pytest.fixture
async def admin_client(console_app, accounts) -> SanicASGITestClient:
    return await signed_in(console_app, accounts, "admin")
