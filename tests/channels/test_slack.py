"""Slack: the real Events API JSON and interactive (button) form, signed with the signing secret like Slack
signs them, in; chat.postMessage to slack.com out (slack_sdk's aiohttp call, mocked with aioresponses)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from aioresponses import aioresponses
from channel_helpers import PASSTHROUGH, recorded

from clinicbot.channels.slack import SlackChannel

BOT_TOKEN = "xoxb-1111-2222-test-token"
SIGNING_SECRET = "slack-signing-secret-for-tests"
POST_MESSAGE = "https://slack.com/api/chat.postMessage"
WEBHOOK = "/webhooks/slack/webhook"
DM_CHANNEL = "D0CLINICDM"


def message_event(user: str, text: str) -> dict:
    """A direct message to the app, as the Events API posts it."""
    return {
        "token": "ZZZZZZWSxiZZZ2yIvs3peJ",
        "team_id": "T0CLINIC1",
        "api_app_id": "A0CLINIC1",
        "event": {
            "client_msg_id": "5f1f0b8e-9c52-4d8e-a0a4-5a4b2f8d2c11",
            "type": "message",
            "text": text,
            "user": user,
            "ts": "1763779200.000100",
            "team": "T0CLINIC1",
            "channel": DM_CHANNEL,
            "event_ts": "1763779200.000100",
            "channel_type": "im",
        },
        "type": "event_callback",
        "event_id": "Ev0CLINIC01",
        "event_time": 1763779200,
        "authorizations": [
            {"enterprise_id": None, "team_id": "T0CLINIC1", "user_id": "U0CLINICBOT", "is_bot": True}
        ],
        "is_ext_shared_channel": False,
    }


def button_click(user: str, value: str, title: str) -> dict:
    """A block_actions payload, as Slack posts it (form field `payload`) when a button is clicked."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "dana", "name": "dana", "team_id": "T0CLINIC1"},
        "api_app_id": "A0CLINIC1",
        "token": "ZZZZZZWSxiZZZ2yIvs3peJ",
        "container": {"type": "message", "message_ts": "1763779201.000200", "channel_id": DM_CHANNEL},
        "trigger_id": "1111.2222.abcd",
        "team": {"id": "T0CLINIC1", "domain": "clinic"},
        "channel": {"id": DM_CHANNEL, "name": "directmessage"},
        "message": {"type": "message", "ts": "1763779201.000200", "text": "Would you like to book?"},
        "response_url": "https://hooks.slack.com/actions/T0CLINIC1/1/abc",
        "actions": [
            {
                "action_id": "Xk3",
                "block_id": "b1",
                "text": {"type": "plain_text", "text": title, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": "1763779205.000300",
            }
        ],
    }


def signed(body: bytes, secret: str = SIGNING_SECRET, timestamp: int = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:".encode("utf-8") + body
    signature = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


@pytest.fixture
def user(sender) -> str:
    return "U" + sender.upper()


@pytest.fixture
def channel():
    return SlackChannel(BOT_TOKEN, None, SIGNING_SECRET)


@pytest.fixture
def app(make_app, channel):
    return make_app(channel)


def mock_slack(mocked: aioresponses) -> None:
    mocked.post(POST_MESSAGE, payload={"ok": True, "channel": DM_CHANNEL, "ts": "1763779300.000400"}, repeat=True)


async def post_event(app, channel, event: dict, **signing):
    body = json.dumps(event).encode("utf-8")
    headers = {"Content-Type": "application/json", **signed(body, **signing)}
    _, response = await app.asgi_client.post(WEBHOOK, content=body, headers=headers)
    await asyncio.gather(*list(channel._background_tasks))  # Slack is answered first, the bot replies after
    return response


async def post_click(app, channel, payload: dict):
    body = urlencode({"payload": json.dumps(payload)}).encode("utf-8")
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    _, response = await app.asgi_client.post(WEBHOOK, content=body, headers=headers)
    await asyncio.gather(*list(channel._background_tasks))
    return response


async def test_red_flag_gets_911_first_in_the_dm(app, channel, user):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_slack(mocked)
        response = await post_event(app, channel, message_event(user, "I can't feel anything between my legs and I can't pee"))
        sent = recorded(mocked, "POST", POST_MESSAGE)

    assert response.status == 200
    assert sent, "the bot posted nothing to Slack"
    assert "911" in sent[0]["text"]
    assert all(message["channel"] == DM_CHANNEL for message in sent)
    assert not any("triage_level" in json.dumps(message) for message in sent)


async def test_booking_buttons_are_shown_and_a_click_books(app, channel, user):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_slack(mocked)
        await post_event(app, channel, message_event(user, "I get tingling in my left leg after sex"))
        offer = recorded(mocked, "POST", POST_MESSAGE)[-1]
        elements = offer["blocks"][1]["elements"]
        buttons = {e["text"]["text"]: e["value"] for e in elements}

        response = await post_click(app, channel, button_click(user, buttons["Book in person"], "Book in person"))
        after_click = recorded(mocked, "POST", POST_MESSAGE)[-1]

    assert offer["text"] == "Would you like to book an appointment with the clinic?"
    assert list(buttons) == ["Book in person", "Book a virtual visit", "Not now"]
    assert response.status == 200
    assert after_click["channel"] == DM_CHANNEL
    assert after_click["text"] == "Let's book your visit. What name should the clinic use for you?"


async def test_more_than_five_buttons_are_all_shown(app, channel, user):
    # Rasa's SlackBot drops every button when there are more than 5; utter_capabilities has 7
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_slack(mocked)
        await post_event(app, channel, message_event(user, "/ask_capabilities"))
        sent = recorded(mocked, "POST", POST_MESSAGE)

    buttons = [e["text"]["text"] for e in sent[-1]["blocks"][1]["elements"]]
    assert len(buttons) == 7 and "When to see a doctor" in buttons


@pytest.mark.parametrize(
    "signing", [{"secret": "not-the-signing-secret"}, {"timestamp": int(time.time()) - 3600}], ids=["forged", "replayed"]
)
async def test_forged_or_replayed_request_is_rejected(app, channel, user, signing):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_slack(mocked)
        response = await post_event(app, channel, message_event(user, "hello"), **signing)
        sent = recorded(mocked, "POST", POST_MESSAGE)

    assert response.status == 403
    assert sent == []
