"""Telegram: real update JSON in, sendMessage to api.telegram.org out (mocked with aioresponses)."""
from __future__ import annotations

import itertools
import json
import os
import uuid
from typing import Optional

import pytest
from aioresponses import aioresponses
from channel_helpers import PASSTHROUGH, recorded

from clinicbot.channels.common import RATE_LIMIT_REPLY
from clinicbot.channels.telegram import SECRET_HEADER, TelegramChannel

TOKEN = "123456789:AAH-test-token-for-the-clinic-bot_x"
SECRET = "telegram-secret-0123456789"
WEBHOOK_URL = "https://bot.clinic.example/webhooks/telegram/webhook"
API = f"https://api.telegram.org/bot{TOKEN}"
WEBHOOK = "/webhooks/telegram/webhook"
# Telegram's update ids only grow; each run starts somewhere new, since with REDIS_URL the ids already handled are
# remembered for a day (a fixed start made the next run's updates look like redeliveries).
UPDATE_IDS = itertools.count(uuid.uuid4().int % 10**12)


def text_update(chat_id: int, text: str, update_id: Optional[int] = None) -> dict:
    """A private-chat text message, as Telegram posts it to the webhook."""
    return {
        "update_id": update_id or next(UPDATE_IDS),
        "message": {
            "message_id": 51,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Dana", "language_code": "en"},
            "chat": {"id": chat_id, "first_name": "Dana", "type": "private"},
            "date": 1763779200,
            "text": text,
        },
    }


def button_update(chat_id: int, data: str) -> dict:
    """A press on an inline keyboard button (callback_query), as Telegram posts it."""
    return {
        "update_id": 10002,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": chat_id, "is_bot": False, "first_name": "Dana", "language_code": "en"},
            "message": {
                "message_id": 52,
                "from": {"id": 987654321, "is_bot": True, "first_name": "Clinic", "username": "clinic_bot"},
                "chat": {"id": chat_id, "first_name": "Dana", "type": "private"},
                "date": 1763779210,
                "text": "Would you like to book an appointment with the clinic?",
            },
            "chat_instance": "-3344556677889900",
            "data": data,
        },
    }


def mock_telegram(mocked: aioresponses, chat_id: int) -> None:
    sent = {"message_id": 60, "date": 1763779220, "chat": {"id": chat_id, "type": "private"}, "text": "ok"}
    mocked.post(f"{API}/sendMessage", payload={"ok": True, "result": sent}, repeat=True)
    mocked.post(f"{API}/setWebhook", payload={"ok": True, "result": True}, repeat=True)
    mocked.post(f"{API}/answerCallbackQuery", payload={"ok": True, "result": True}, repeat=True)


@pytest.fixture
def chat_id(sender) -> int:
    return int(sender[:8], 16)


@pytest.fixture
def app(make_app):
    return make_app(TelegramChannel(TOKEN, SECRET, WEBHOOK_URL))


async def post(app, update: dict, secret: str = SECRET):
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    _, response = await app.asgi_client.post(WEBHOOK, json=update, headers=headers)
    return response


async def test_red_flag_gets_911_first_in_the_same_chat(app, chat_id):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        response = await post(app, text_update(chat_id, "I can't feel anything between my legs and I can't pee"))
        sent = recorded(mocked, "POST", f"{API}/sendMessage")

    assert response.status == 200
    assert sent, "the bot sent nothing to Telegram"
    assert "911" in sent[0]["text"]
    assert not any("not a diagnosis" in message["text"] for message in sent)  # nothing waters down "call 911"
    assert all(int(message["chat_id"]) == chat_id for message in sent)
    # the domain's custom payload (triage_level) is never posted to the patient
    assert not any("triage_level" in json.dumps(message) for message in sent)


async def test_booking_buttons_are_shown_and_a_button_press_books(app, chat_id):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(app, text_update(chat_id, "I get tingling in my left leg after sex"))
        offer = recorded(mocked, "POST", f"{API}/sendMessage")[-1]
        keyboard = json.loads(offer["reply_markup"])["inline_keyboard"]
        buttons = {row[0]["text"]: row[0]["callback_data"] for row in keyboard}  # one button per row

        response = await post(app, button_update(chat_id, buttons["Book in person"]))
        after_press = recorded(mocked, "POST", f"{API}/sendMessage")[-1]
        acknowledged = recorded(mocked, "POST", f"{API}/answerCallbackQuery")

    assert offer["text"] == "Would you like to book an appointment with the clinic?"
    assert list(buttons) == ["Book in person", "Book a virtual visit", "Not now"]
    assert response.status == 200
    assert int(after_press["chat_id"]) == chat_id
    assert after_press["text"].startswith("Let's book your visit. What name should the clinic use for you?")
    assert acknowledged and acknowledged[0]["callback_query_id"] == "4382bfdwdsb323b2d9"


async def test_start_command_greets_with_the_disclaimer(app, chat_id):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(app, text_update(chat_id, "/start"))
        sent = recorded(mocked, "POST", f"{API}/sendMessage")

    assert sent and "it is not a diagnosis or medical advice" in sent[0]["text"]


async def test_a_first_message_that_is_a_question_gets_the_answer_then_the_disclaimer(app, chat_id):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(app, text_update(chat_id, "what is vaginismus"))
        await post(app, text_update(chat_id, "what is vulvodynia", update_id=10003))
        sent = [message["text"] for message in recorded(mocked, "POST", f"{API}/sendMessage")]

    assert "Source:" in sent[0] and sent[0].endswith("it is not a diagnosis or medical advice. In an emergency, call 911.)")
    assert sum("not a diagnosis" in text for text in sent) == 1


@pytest.mark.parametrize("secret", [None, "wrong-secret"], ids=["no secret header", "wrong secret"])
async def test_forged_update_is_rejected_and_nothing_is_sent(app, chat_id, secret):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        response = await post(app, text_update(chat_id, "hello"), secret=secret)
        sent = recorded(mocked, "POST", f"{API}/sendMessage")

    assert response.status == 403
    assert sent == []


async def test_webhook_is_registered_with_the_secret_token(app, chat_id):
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(app, text_update(chat_id, "hello"))  # the test client starts the app: after_server_start runs
        registered = recorded(mocked, "POST", f"{API}/setWebhook")

    assert registered, "setWebhook was not called at start"
    assert registered[0]["url"] == WEBHOOK_URL
    assert registered[0]["secret_token"] == SECRET


@pytest.mark.parametrize("shared", ["memory", "redis"])
async def test_a_redelivered_update_is_answered_once(make_app, chat_id, monkeypatch, shared):
    """Telegram redelivers an update (same update_id) it got no 200 for. With REDIS_URL two Rasa instances agree."""
    if shared == "redis":
        monkeypatch.setenv("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/3"))
    first_instance = make_app(TelegramChannel(TOKEN, SECRET, WEBHOOK_URL))
    other_instance = make_app(TelegramChannel(TOKEN, SECRET, WEBHOOK_URL)) if shared == "redis" else first_instance
    update = text_update(chat_id, "what is vaginismus", update_id=int(chat_id) % 1_000_000_000)
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(first_instance, update)
        answered = len(recorded(mocked, "POST", f"{API}/sendMessage"))
        response = await post(other_instance, update)
        sent = recorded(mocked, "POST", f"{API}/sendMessage")

    assert response.status == 200
    assert answered >= 1 and len(sent) == answered


@pytest.mark.parametrize("shared", ["memory", "redis"])
async def test_a_sender_over_the_rate_limit_gets_one_kind_reply_and_the_bot_reads_no_more(make_app, chat_id, monkeypatch, shared):
    monkeypatch.setenv("SENDER_MESSAGES_PER_MINUTE", "2")
    if shared == "redis":
        monkeypatch.setenv("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/3"))
    first_instance = make_app(TelegramChannel(TOKEN, SECRET, WEBHOOK_URL))
    other_instance = make_app(TelegramChannel(TOKEN, SECRET, WEBHOOK_URL)) if shared == "redis" else first_instance
    with aioresponses(passthrough=PASSTHROUGH) as mocked:
        mock_telegram(mocked, chat_id)
        await post(first_instance, text_update(chat_id, "what is vaginismus"))
        await post(other_instance, text_update(chat_id, "what is vulvodynia"))
        answered = len(recorded(mocked, "POST", f"{API}/sendMessage"))
        for text in ("hello?", "hello??", "HELLO"):
            response = await post(other_instance, text_update(chat_id, text))
        sent = [m["text"] for m in recorded(mocked, "POST", f"{API}/sendMessage")]

    assert response.status == 200
    assert sum("Source:" in text for text in sent) == 2  # both questions within the limit were answered
    assert sent[answered:] == [RATE_LIMIT_REPLY]  # then one kind reply, with the emergency line, and nothing else
    assert "call 911" in RATE_LIMIT_REPLY
