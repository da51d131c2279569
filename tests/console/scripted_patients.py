"""Scripted patients for the console tests: each talks to the real bot through the REST channel.

`run_conversations` returns {label: conversation id} (the REST channel's namespaced sender id); the expectations below say which console flags each
conversation must carry. A script step is (text, expected_substring_or_None): the substring must appear
in one of the bot's replies, so a changed model that no longer behaves as the test assumes fails loudly
here instead of making a console assertion fail for an unclear reason.
"""
from __future__ import annotations

import uuid
from typing import Dict, List, Optional, Tuple

import httpx

from clinicbot.channels.rest import namespaced

Step = Tuple[str, Optional[str]]

BOOKING_NAME = "Jane Roe"
BOOKING_PHONE = "555-123-4567"
FREE_TEXT_EMAIL = "jane.roe@example.com"
FREE_TEXT_PHONE = "555 987 6543"
MARKUP = "<script>alert('owned')</script><b>bold</b>"
FORMULA = '=HYPERLINK("http://example.com/x","click") is pelvic floor therapy painful'


SCRIPTS: Dict[str, List[Step]] = {
    # BOOKING-level red flag, then a full booking through the form.
    "booking": [
        ("I get tingling in my left leg after sex", "book"),
        ("/book_appointment", "name"),
        (f"my name is {BOOKING_NAME}", "reach you"),
        (BOOKING_PHONE, "in person"),
        ('/inform{"visit_type": "in_person"}', "times"),
        ("weekday mornings", "contact you"),
        ("/affirm", None),
        ("/affirm", "PH-"),
    ],
    # EMERGENCY red flag (cauda equina signs).
    "emergency": [
        ("I can't feel anything between my legs and I can't pee", None),
    ],
    # An emergency that only becomes clear in the second message (conversation-level triage).
    "emergency_across_turns": [
        ("my lower back has been really sore since the weekend", None),
        ("and now I can't feel the toilet paper when I wipe", "911"),
    ],
    # URGENT red flag.
    "urgent": [
        ("My back has been hurting since yesterday and I've got a fever", None),
    ],
    # An FAQ answer the patient says did not help.
    "negative_feedback": [
        ("why does my back hurt after sex", "Did that answer your question?"),
        ("/feedback_not_helpful", None),
    ],
    # An FAQ answer that helped: no flags at all.
    "helpful": [
        ("how do i prevent back pain after sex", "Did that answer your question?"),
        ("/feedback_helpful", None),
    ],
    # Asks for a person: handoff.
    "handoff": [
        ("can i talk to a person", None),
    ],
    # Gibberish: the bot says it did not understand.
    "fallback": [
        ("qwpoeiru zxmcnvb lkjhg", None),
    ],
    # Markup typed by a patient, plus contact details in free text (for escaping and redaction).
    "markup": [
        (f"{MARKUP} my email is {FREE_TEXT_EMAIL} and my number is {FREE_TEXT_PHONE}", None),
    ],
    # Text a spreadsheet would run as a formula (CSV injection).
    "formula": [
        (FORMULA, None),
    ],
}

# Which flags each conversation must (True) or must not (False) carry in the console.
EXPECTED_FLAGS = {
    "booking": {"red_flag_level": "BOOKING", "booking": True, "negative_feedback": False, "handoff": False},
    "emergency": {"red_flag_level": "EMERGENCY", "booking": False, "handoff": False},
    "emergency_across_turns": {"red_flag_level": "EMERGENCY", "booking": False},
    "urgent": {"red_flag_level": "URGENT", "booking": False},
    "negative_feedback": {"red_flag_level": "NONE", "negative_feedback": True, "booking": False},
    "helpful": {"red_flag_level": "NONE", "negative_feedback": False, "booking": False, "handoff": False, "fallback": False},
    "handoff": {"red_flag_level": "NONE", "handoff": True},
    "fallback": {"red_flag_level": "NONE", "fallback": True},
}


def say(rasa_url: str, sender: str, text: str) -> List[dict]:
    reply = httpx.post(f"{rasa_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def run_conversations(rasa_url: str, labels: Optional[List[str]] = None) -> Dict[str, str]:
    senders: Dict[str, str] = {}
    for label in labels or list(SCRIPTS):
        sender = f"console-{label}-{uuid.uuid4().hex[:8]}"
        for text, expected in SCRIPTS[label]:
            replies = " ".join(message.get("text", "") for message in say(rasa_url, sender, text))
            if expected is not None:
                assert expected.lower() in replies.lower(), f"{label}: after {text!r} the bot said {replies!r}"
        senders[label] = namespaced(sender)
    return senders
