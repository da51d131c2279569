"""Facebook Messenger: the real webhook JSON (signed with the app secret like Meta signs it) in, the fbmessenger
SDK's MessengerClient.send out (mocked: it is the client's one call to the Graph API's /me/messages)."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import List, Optional, Tuple
from unittest.mock import patch

import pytest

from clinicbot.channels.facebook import FacebookChannel

VERIFY = "fb-verify-token"
APP_SECRET = "fb-app-secret-for-tests"
PAGE_TOKEN = "EAAB-page-access-token"
PAGE_ID = "106011112223334"
WEBHOOK = "/webhooks/facebook/webhook"


def page_event(psid: str, event: dict) -> dict:
    return {
        "object": "page",
        "entry": [
            {
                "id": PAGE_ID,
                "time": 1763779200123,
                "messaging": [
                    {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": 1763779200000, **event}
                ],
            }
        ],
    }


def text_message(psid: str, text: str, mid: Optional[str] = None) -> dict:
    return page_event(psid, {"message": {"mid": mid or "m_" + uuid.uuid4().hex, "text": text}})


def postback(psid: str, title: str, payload: str) -> dict:
    return page_event(psid, {"postback": {"mid": "m_GhIjKl0123456789", "title": title, "payload": payload}})


@pytest.fixture
def psid(sender) -> str:
    return str(int(sender, 16))


@pytest.fixture
def app(make_app):
    return make_app(FacebookChannel(VERIFY, APP_SECRET, PAGE_TOKEN))


@pytest.fixture
def fb_sent():
    """(message payload, recipient id) of every MessengerClient.send call."""
    sent: List[Tuple[dict, str]] = []
    with patch("fbmessenger.MessengerClient.send", autospec=True) as send:
        send.side_effect = lambda _self, payload, recipient_id, *args, **kwargs: sent.append((payload, recipient_id))
        yield sent


async def post(app, event: dict, secret: str = APP_SECRET):
    body = json.dumps(event).encode("utf-8")
    signature = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
    _, response = await app.asgi_client.post(WEBHOOK, content=body, headers=headers)
    return response


def text_of(payload: dict) -> str:
    return payload.get("text") or payload.get("attachment", {}).get("payload", {}).get("text", "")


async def test_red_flag_gets_911_first_to_the_right_person(app, psid, fb_sent):
    response = await post(app, text_message(psid, "I can't feel anything between my legs and I can't pee"))

    assert response.status == 200
    assert fb_sent, "the bot sent nothing to Messenger"
    assert "911" in text_of(fb_sent[0][0])
    assert all(recipient == psid for _, recipient in fb_sent)
    assert not any("triage_level" in json.dumps(payload) for payload, _ in fb_sent)


async def test_booking_offer_is_a_button_template_and_the_postback_books(app, psid, fb_sent):
    await post(app, text_message(psid, "I get tingling in my left leg after sex"))
    offer = fb_sent[-1][0]["attachment"]["payload"]
    buttons = {b["title"]: b["payload"] for b in offer["buttons"]}

    await post(app, postback(psid, "Book in person", buttons["Book in person"]))

    assert offer["template_type"] == "button"
    assert offer["text"] == "Would you like to book an appointment with the clinic?"
    assert list(buttons) == ["Book in person", "Book a virtual visit", "Not now"]
    assert text_of(fb_sent[-1][0]) == "Let's book your visit. What name should the clinic use for you?"
    assert fb_sent[-1][1] == psid


async def test_greeting_with_a_long_button_title_becomes_numbered_options(app, psid, fb_sent):
    # utter_greet has 4 buttons and "What can you help with?" is longer than Messenger's 20 characters
    await post(app, text_message(psid, "hello"))
    greeting = text_of(fb_sent[-1][0])
    await post(app, text_message(psid, "3"))

    assert "1. Back pain after sex" in greeting and "3. What can you help with?" in greeting
    assert text_of(fb_sent[-1][0]).startswith("I can answer questions about back, hip and pelvic pain")


async def test_forged_signature_is_rejected_and_nothing_is_sent(app, psid, fb_sent):
    response = await post(app, text_message(psid, "hello"), secret="not-the-app-secret")

    assert response.status == 403
    assert fb_sent == []


async def test_a_request_signed_only_with_the_weaker_sha1_header_is_rejected(app, psid, fb_sent):
    body = json.dumps(text_message(psid, "hello")).encode("utf-8")
    sha1 = "sha1=" + hmac.new(APP_SECRET.encode("utf-8"), body, hashlib.sha1).hexdigest()  # valid, but SHA-1
    _, response = await app.asgi_client.post(
        WEBHOOK, content=body, headers={"Content-Type": "application/json", "X-Hub-Signature": sha1}
    )

    assert response.status == 403
    assert fb_sent == []


async def test_unsigned_request_is_rejected(app, psid, fb_sent):
    _, response = await app.asgi_client.post(WEBHOOK, json=text_message(psid, "hello"))

    assert response.status == 403
    assert fb_sent == []


async def test_subscription_check_answers_only_the_right_verify_token(app):
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    _, good = await app.asgi_client.get(WEBHOOK, params={**query, "hub.verify_token": VERIFY})
    _, bad = await app.asgi_client.get(WEBHOOK, params={**query, "hub.verify_token": "guess"})

    assert good.status == 200 and good.text == "1158201444"
    assert bad.status == 403


async def test_a_redelivered_message_is_answered_once(app, psid, fb_sent):
    event = text_message(psid, "what is vaginismus")
    await post(app, event)
    answered = len(fb_sent)
    response = await post(app, event)  # Messenger retries with the same mid

    assert response.status == 200
    assert answered >= 1 and len(fb_sent) == answered
