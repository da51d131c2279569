"""WhatsApp through Twilio: the real webhook form (signed like Twilio signs it) in, the Twilio SDK's
messages.create out (mocked: the SDK's MessageList.create is the boundary to Twilio's REST API)."""
from __future__ import annotations

import uuid
from typing import List, Optional
from unittest.mock import patch

import pytest
from twilio.request_validator import RequestValidator

from clinicbot.channels.twilio import TwilioChannel

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token-for-tests"
CLINIC_NUMBER = "whatsapp:+14155238886"
WEBHOOK_URL = "https://bot.clinic.example/webhooks/twilio/webhook"
WEBHOOK = "/webhooks/twilio/webhook"


def whatsapp_form(patient: str, body: str, sid: Optional[str] = None) -> dict:
    """The form Twilio posts for an incoming WhatsApp message (each message has its own MessageSid)."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Dana",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": patient.split("+")[-1],
        "SmsStatus": "received",
        "Body": body,
        "To": CLINIC_NUMBER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": patient,
        "ApiVersion": "2010-04-01",
    }


@pytest.fixture
def patient(sender) -> str:
    return "whatsapp:+1555" + str(int(sender[:6], 16)).zfill(7)[:7]


@pytest.fixture
def app(make_app):
    return make_app(TwilioChannel(ACCOUNT_SID, AUTH_TOKEN, CLINIC_NUMBER, WEBHOOK_URL))


@pytest.fixture
def twilio_sent():
    """Every message the bot asks Twilio to send, as the keyword arguments of messages.create."""
    with patch("twilio.rest.api.v2010.account.message.MessageList.create", autospec=True) as create:
        create.return_value = object()
        sent: List[dict] = []
        create.side_effect = lambda _self, **kwargs: sent.append(kwargs) or object()
        yield sent


async def post(app, form: dict, signature: str = None):
    if signature is None:
        signature = RequestValidator(AUTH_TOKEN).compute_signature(WEBHOOK_URL, form)
    _, response = await app.asgi_client.post(WEBHOOK, data=form, headers={"X-Twilio-Signature": signature})
    return response


async def test_red_flag_gets_911_first_to_the_patients_number(app, patient, twilio_sent):
    response = await post(app, whatsapp_form(patient, "I can't feel anything between my legs and I can't pee"))

    assert response.status == 200
    assert twilio_sent, "the bot sent nothing to Twilio"
    assert "911" in twilio_sent[0]["body"]
    assert all(m["to"] == patient and m["from_"] == CLINIC_NUMBER for m in twilio_sent)
    assert all(m["body"].strip() for m in twilio_sent), "an empty message (the custom payload) went to the patient"


async def test_buttons_become_numbered_options_and_1_books_in_person(app, patient, twilio_sent):
    await post(app, whatsapp_form(patient, "I get tingling in my left leg after sex"))
    offer = twilio_sent[-1]["body"]

    await post(app, whatsapp_form(patient, "1"))

    assert offer == (
        "Would you like to book an appointment with the clinic?\n\n"
        "1. Book in person\n2. Book a virtual visit\n3. Not now\n\nReply with a number."
    )
    assert twilio_sent[-1]["body"] == "Let's book your visit. What name should the clinic use for you?"


async def test_reply_3_is_the_not_now_button(app, patient, twilio_sent):
    await post(app, whatsapp_form(patient, "I get tingling in my left leg after sex"))
    await post(app, whatsapp_form(patient, "3"))

    assert twilio_sent[-1]["body"].startswith("That's okay.")


async def test_a_number_is_plain_text_when_no_options_were_offered(app, patient, twilio_sent):
    await post(app, whatsapp_form(patient, "I get tingling in my left leg after sex"))
    await post(app, whatsapp_form(patient, "1"))  # -> "What name should the clinic use for you?"
    await post(app, whatsapp_form(patient, "Dana"))  # -> asks for a phone number or e-mail (no options)
    asked_contact = twilio_sent[-1]["body"]
    before = len(twilio_sent)
    await post(app, whatsapp_form(patient, "2"))
    replies = [m["body"] for m in twilio_sent[before:]]

    assert asked_contact.startswith("How can the clinic reach you?")
    # "2" was not turned into "Book a virtual visit": it went to the form as text and is not a phone number
    assert replies[0].startswith("Sorry, that doesn't look like a phone number")
    assert replies[-1].startswith("How can the clinic reach you?")


@pytest.mark.parametrize("signature", ["", "bm90LXRoZS1yaWdodC1zaWduYXR1cmU="], ids=["missing", "forged"])
async def test_forged_signature_is_rejected_and_nothing_is_sent(app, patient, twilio_sent, signature):
    response = await post(app, whatsapp_form(patient, "hello"), signature=signature)

    assert response.status == 403
    assert twilio_sent == []


async def test_signature_for_another_body_is_rejected(app, patient, twilio_sent):
    signed = RequestValidator(AUTH_TOKEN).compute_signature(WEBHOOK_URL, whatsapp_form(patient, "hello"))
    response = await post(app, whatsapp_form(patient, "I want to book"), signature=signed)

    assert response.status == 403
    assert twilio_sent == []


async def test_a_redelivered_message_is_answered_once(app, patient, twilio_sent):
    # Twilio sends the same message again (same MessageSid) when it did not get the 200 in time.
    form = whatsapp_form(patient, "what is vaginismus")
    first = await post(app, form)
    answered = len(twilio_sent)
    again = await post(app, form)

    assert first.status == again.status == 200
    assert answered >= 1 and len(twilio_sent) == answered
