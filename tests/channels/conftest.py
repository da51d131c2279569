"""Channel tests the way Rasa's own tests do them: one Sanic app per test built with rasa.core.run.configure_app
around the project's input channel, the trained model in an in-process Agent (loaded once), the platform's real
webhook payload posted to /webhooks/<channel>/webhook, and the platform's servers mocked at the HTTP/SDK boundary.

Custom actions run on the action server of the `stack` fixture (tests/conftest.py); conversations live in the
Agent's in-memory tracker store, so every test uses its own sender id.
"""
from __future__ import annotations

import uuid
from typing import Any, Optional

import pytest
from sanic import Sanic

from clinicbot.action_server import SECRET_HEADER
from clinicbot.run import MODEL
from clinicbot.settings import PROJECT_ROOT

Sanic.test_mode = True  # many apps named "rasa_server" in one process


@pytest.fixture(scope="session")
def channel_agent(stack):
    from rasa.core.agent import Agent
    from rasa.core.utils import AvailableEndpoints
    from rasa.utils.endpoints import EndpointConfig

    # the action server answers only callers with the stack's shared secret, as the Rasa server is
    action_endpoint = EndpointConfig(
        f"http://localhost:{stack.ports.actions}/webhook",
        headers={SECRET_HEADER: stack.environment["ACTION_SERVER_SECRET"]},
    )
    # and the responses come from the project's generator (endpoints.yml `nlg`: disclaimer, helplines)
    generator = AvailableEndpoints.read_endpoints(str(PROJECT_ROOT / "endpoints.yml")).nlg
    return Agent.load(str(MODEL), action_endpoint=action_endpoint, generator=generator)


@pytest.fixture
def make_app(channel_agent):
    """make_app(channel) -> a Rasa server app with only that input channel, answering with the trained model."""
    from rasa.core.run import configure_app

    def make(*channels: Any, auth_token: Optional[str] = None) -> Sanic:
        app = configure_app(list(channels), auth_token=auth_token, enable_api=auth_token is not None)
        app.ctx.agent = channel_agent
        return app

    return make


@pytest.fixture
def sender() -> str:
    return uuid.uuid4().hex[:10]


