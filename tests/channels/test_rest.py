"""The REST channel: token-protected when RASA_AUTH_TOKEN is set, this machine only when unset, its own sender
namespace, and a kind reply to an empty message. Rasa's HTTP API with the same token (what `rasa run --auth-token` does in clinicbot/run.py)."""
from __future__ import annotations

import httpx
import pytest

from clinicbot.channels.rest import EMPTY_MESSAGE_REPLY, RestChannel

TOKEN = "rest-token-for-tests"
WEBHOOK = "/webhooks/rest/webhook"


@pytest.fixture
def protected(make_app):
    return make_app(RestChannel(auth_token=TOKEN), auth_token=TOKEN)


@pytest.fixture
def open_app(make_app):
    return make_app(RestChannel(auth_token=None))


def texts(response) -> list:
    return [message.get("text", "") for message in response.json]


async def test_without_token_is_403_and_the_bot_does_not_answer(protected, sender):
    _, response = await protected.asgi_client.post(WEBHOOK, json={"sender": sender, "message": "hello"})

    assert response.status == 403
    assert "not a diagnosis" not in response.text


async def test_wrong_token_is_403(protected, sender):
    _, response = await protected.asgi_client.post(
        WEBHOOK, json={"sender": sender, "message": "hello"}, headers={"Authorization": "Bearer guessed"}
    )

    assert response.status == 403


async def test_with_the_token_in_the_header_the_bot_answers(protected, sender):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    _, response = await protected.asgi_client.post(WEBHOOK, json={"sender": sender, "message": "hello"}, headers=headers)

    assert response.status == 200
    assert any("it is not a diagnosis" in text for text in texts(response))


async def test_a_token_in_the_url_is_not_accepted(protected, sender):
    """URLs end up in proxy and access logs: the token goes in the Authorization header only."""
    _, response = await protected.asgi_client.post(WEBHOOK, json={"sender": sender, "message": "hello"}, params={"token": TOKEN})

    assert response.status == 403


async def test_rasa_http_api_needs_the_same_token(protected, sender):
    _, without = await protected.asgi_client.get(f"/conversations/{sender}/tracker")
    _, with_token = await protected.asgi_client.get(f"/conversations/{sender}/tracker", params={"token": TOKEN})

    assert without.status == 401
    assert with_token.status == 200 and with_token.json["sender_id"] == sender


def test_without_a_configured_token_it_answers_this_machine(stack, sender):
    """The running stack has no RASA_AUTH_TOKEN: a caller on this machine is answered, in the REST namespace."""
    response = httpx.post(f"{stack.rasa_url}{WEBHOOK}", json={"sender": sender, "message": "hello"}, timeout=60)

    assert response.status_code == 200
    assert any("it is not a diagnosis" in message.get("text", "") for message in response.json())
    assert {message["recipient_id"] for message in response.json()} == {f"rest:{sender}"}


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_without_a_configured_token_a_proxied_caller_is_refused(stack, sender, header):
    """Behind a reverse proxy every caller looks local; the proxy's header gives it away."""
    response = httpx.post(
        f"{stack.rasa_url}{WEBHOOK}", json={"sender": sender, "message": "hello"}, headers={header: "203.0.113.9"}, timeout=60,
    )

    assert response.status_code == 403
    assert "not a diagnosis" not in response.text


async def test_without_a_configured_token_a_caller_from_another_machine_is_refused(open_app, sender):
    # the in-process test client's peer is "mockserver", not a loopback address
    _, response = await open_app.asgi_client.post(WEBHOOK, json={"sender": sender, "message": "hello"})

    assert response.status == 403


@pytest.mark.parametrize("message", ["", "   \n\t "], ids=["empty", "whitespace"])
async def test_empty_message_gets_a_kind_reply(protected, sender, message):
    _, response = await protected.asgi_client.post(
        WEBHOOK, json={"sender": sender, "message": message}, headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status == 200
    assert response.json == [{"recipient_id": f"rest:{sender}", "text": EMPTY_MESSAGE_REPLY}]
    assert "type your question" in EMPTY_MESSAGE_REPLY


async def test_empty_message_still_needs_the_token(protected, sender):
    _, response = await protected.asgi_client.post(WEBHOOK, json={"sender": sender, "message": ""})

    assert response.status == 403


def test_empty_message_on_the_running_server(chat):
    """The real `rasa run` with credentials.yml: the project's REST channel is the one answering."""
    assert chat.texts(" ") == [EMPTY_MESSAGE_REPLY]
