"""Shared fixtures. The `stack` fixture runs the real thing: `rasa run` with the trained model, the action
server and the web app, on test ports, against a fresh SQLite database in a temporary folder."""
from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Dict, List

import httpx
import pytest

from clinicbot.channels.rest import namespaced
from clinicbot.run import MODEL, Ports, start_stack
from clinicbot.storage import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Free ports, so that a test run never collides with `make run` or another test run on the machine.
TEST_PORTS = Ports(rasa=_free_port(), actions=_free_port(), web=_free_port())
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def stack_env(stack_dir) -> Dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{stack_dir / 'clinic.db'}",
        "BOOKING_OUTBOX_DIR": str(stack_dir / "outbox"),
        "CONSOLE_SECRET": "test-secret",
    }


@pytest.fixture(scope="session")
def stack(stack_dir, stack_env):
    assert MODEL.exists(), "no trained model: run `make train` (make test does)"
    running = start_stack(ports=TEST_PORTS, env=stack_env, log_dir=stack_dir / "logs")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack_store(stack, stack_env) -> Store:
    return Store(stack_env["DATABASE_URL"], Path(stack_env["BOOKING_OUTBOX_DIR"]))


class Chat:
    """One patient talking to the bot through the REST channel."""

    def __init__(self, base_url: str, sender: str) -> None:
        self.url = f"{base_url}/webhooks/rest/webhook"
        self.sender = sender
        # what the tracker store and the project's tables call this conversation (REST has its own namespace)
        self.conversation_id = namespaced(sender)

    def say(self, text: str) -> List[dict]:
        reply = httpx.post(self.url, json={"sender": self.sender, "message": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def texts(self, text: str) -> List[str]:
        return [message.get("text", "") for message in self.say(text)]


@pytest.fixture
def chat(stack) -> Chat:
    return Chat(stack.rasa_url, sender=f"test-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def new_chat(stack):
    def make() -> Chat:
        return Chat(stack.rasa_url, sender=f"test-{uuid.uuid4().hex[:12]}")

    return make
