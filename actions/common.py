"""Small helpers shared by the actions."""
from __future__ import annotations

from typing import Any, Dict, Optional

from rasa_sdk import Tracker

from clinicbot.console.redaction import pseudonym
from clinicbot.settings import load_settings
from clinicbot.triage import LEVEL_RANK


REASON_MAX_CHARS = 300


def patient_words(text: Optional[str]) -> str:
    """A patient's message as a booking's reason: their words, whitespace tidied, cut at a word near 300 characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= REASON_MAX_CHARS else text[:REASON_MAX_CHARS].rsplit(" ", 1)[0] + "…"


def log_id(tracker: Tracker) -> str:
    """The conversation as logs name it: a pseudonym (the de-identified export's), never the sender id, which
    is a phone number on WhatsApp."""
    return pseudonym(load_settings().pseudonym_secret, tracker.sender_id)


def channel_of(tracker: Tracker) -> Optional[str]:
    return tracker.get_latest_input_channel()


def latest_triage(tracker: Tracker) -> Dict[str, Any]:
    """The triage that led to the advice just given: the conversation's, when it needs more care than the
    latest message alone (clinicbot/triage_policy.py keeps it in a slot), else the message's own
    (clinicbot/nlu_triage.py attaches it to the parse data)."""
    message = (tracker.latest_message or {}).get("triage") or {}
    conversation = tracker.get_slot("triage_conversation") or {}
    if LEVEL_RANK.get(conversation.get("level"), 0) > LEVEL_RANK.get(message.get("level"), 0):
        used = set(conversation.get("used") or [])
        words = [f["words"] for f in conversation.get("findings") or [] if f.get("name") in used and f.get("status") == "affirmed"]
        return {"level": conversation["level"], "rule": (conversation.get("rules") or [None])[0],
                "rules": list(conversation.get("rules") or []), "matched": list(dict.fromkeys(words))}
    return message


def user_timestamp(tracker: Tracker) -> Optional[float]:
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return event.get("timestamp")
    return None
