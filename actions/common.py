"""Small helpers shared by the actions."""
from __future__ import annotations

from typing import Any, Dict, Optional

from rasa_sdk import Tracker

from clinicbot.settings import load_settings


def clinic_vars() -> Dict[str, str]:
    """Template variables for responses that mention the clinic (utter_handoff, utter_booking_stored...)."""
    clinic = load_settings().clinic
    return {
        "clinic_name": clinic.name,
        "clinic_phone": clinic.phone,
        "clinic_hours": clinic.hours,
        "clinic_email": clinic.email,
        "clinic_booking_url": clinic.booking_url,
    }


def channel_of(tracker: Tracker) -> Optional[str]:
    return tracker.get_latest_input_channel()


def latest_triage(tracker: Tracker) -> Dict[str, Any]:
    """The triage result the Rasa server attached to the latest user message (clinicbot/nlu_triage.py)."""
    return (tracker.latest_message or {}).get("triage") or {}


def user_timestamp(tracker: Tracker) -> Optional[float]:
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return event.get("timestamp")
    return None
