"""The booking form: validation, read-back, submission and cancellation."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.common import channel_of, log_id, patient_words
from clinicbot.booking import VISIT_LABELS, parse_contact, parse_name, parse_times, parse_visit_type
from clinicbot.storage import default_store

logger = logging.getLogger(__name__)

BOOKING_SLOTS = [
    "booking_name",
    "booking_contact",
    "booking_visit_type",
    "booking_times",
    "booking_consent",
    "booking_confirmed",
    "booking_reason",
    "triage_level",
]
CORRECTABLE_SLOTS = {"booking_name", "booking_contact", "booking_visit_type", "booking_times"}
NO_CONSENT = "no_consent"


def reset_booking_slots() -> List[Dict]:
    return [SlotSet(slot, None) for slot in BOOKING_SLOTS]


class ValidateBookingForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_booking_form"

    def validate_booking_name(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        name = parse_name(value if isinstance(value, str) else " ".join(value or []))
        if name is None:
            dispatcher.utter_message(response="utter_invalid_name")
        return {"booking_name": name}

    def validate_booking_contact(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        contact = parse_contact(value)
        if contact is None:
            dispatcher.utter_message(response="utter_invalid_contact")
            return {"booking_contact": None}
        return {"booking_contact": contact.value}

    def validate_booking_visit_type(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        visit_type = parse_visit_type(value)
        if visit_type is None:
            dispatcher.utter_message(response="utter_invalid_visit_type")
        return {"booking_visit_type": visit_type}

    def validate_booking_times(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        return {"booking_times": parse_times(value)}

    def validate_booking_consent(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        if value is False:
            dispatcher.utter_message(response="utter_booking_no_consent")
            # Completes the form; action_submit_booking sees no consent and stores nothing.
            return {"booking_consent": False, "booking_confirmed": NO_CONSENT}
        return {"booking_consent": bool(value)}

    def validate_booking_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict):
        if value == "yes":
            return {"booking_confirmed": "yes"}
        field = next(tracker.get_latest_entity_values("booking_field"), None)
        if field in CORRECTABLE_SLOTS:
            # Empty the field: the form asks for it again, then reads everything back once more.
            return {field: None, "booking_confirmed": None}
        return {"booking_confirmed": None}


class ActionAskBookingConfirmed(Action):
    """Reads the request back before it is sent; after a "no", asks what to change instead."""

    def name(self) -> Text:
        return "action_ask_booking_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        if intent == "deny":
            dispatcher.utter_message(response="utter_ask_booking_field_to_change")
            return []
        reason = tracker.get_slot("booking_reason") or reason_from_conversation(tracker)
        dispatcher.utter_message(
            response="utter_booking_read_back",
            booking_name=tracker.get_slot("booking_name"),
            booking_contact=tracker.get_slot("booking_contact"),
            visit_label=VISIT_LABELS.get(tracker.get_slot("booking_visit_type"), "not given"),
            booking_times=tracker.get_slot("booking_times"),
            booking_reason=reason,
        )
        return [SlotSet("booking_reason", reason)]


# Messages that say nothing about why the patient wants a visit.
NOT_A_REASON = {"greet", "goodbye", "thanks", "affirm", "deny", "book_appointment", "ask_human", "bot_challenge",
                "ask_capabilities", "feedback_helpful", "feedback_not_helpful", "stop", "out_of_scope", "inform",
                "correct_booking"}


def reason_from_conversation(tracker: Tracker) -> str:
    """The reason for the visit in the patient's own words: the first thing they wrote about their problem or
    question in this session before the booking form started (a red flag sets the slot itself, with the words
    that raised it)."""
    reason = None
    for event in tracker.events:
        kind = event.get("event")
        if kind == "session_started":
            reason = None
        elif kind == "active_loop" and event.get("name") == "booking_form":
            break  # the form's answers (a name, a number) are not the reason
        elif kind == "user" and reason is None:
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            text = " ".join((event.get("text") or "").split())
            if intent not in NOT_A_REASON and text and not text.startswith("/"):
                reason = patient_words(text)
    return reason or "Not given"


def form_started_at(tracker: Tracker) -> Optional[float]:
    for event in reversed(tracker.events):
        if event.get("event") == "active_loop" and event.get("name") == "booking_form":
            return event.get("timestamp")
    return None


class ActionSubmitBooking(Action):
    def name(self) -> Text:
        return "action_submit_booking"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        if tracker.get_slot("booking_confirmed") != "yes" or tracker.get_slot("booking_consent") is not True:
            return reset_booking_slots()
        contact = parse_contact(tracker.get_slot("booking_contact"))
        booking = {
            # One booking per run of the form: a repeated "yes" or a retried request maps to the same row.
            "idempotency_key": f"{tracker.sender_id}:{form_started_at(tracker)}",
            "conversation_id": tracker.sender_id,
            "channel": channel_of(tracker),
            "name": tracker.get_slot("booking_name"),
            "contact": contact.value if contact else tracker.get_slot("booking_contact"),
            "contact_kind": contact.kind if contact else "phone",
            "visit_type": tracker.get_slot("booking_visit_type"),
            "preferred_times": tracker.get_slot("booking_times"),
            "reason": tracker.get_slot("booking_reason") or reason_from_conversation(tracker),
            "triage_level": tracker.get_slot("triage_level") or "NONE",
            "consent": True,
        }
        try:
            result = default_store().save_booking(booking)
        except Exception:
            logger.exception("Booking for %s could not be stored or queued", log_id(tracker))
            dispatcher.utter_message(response="utter_booking_failed")
            return reset_booking_slots()
        response = "utter_booking_stored" if result.stored else "utter_booking_queued"
        dispatcher.utter_message(response=response, reference=result.reference)
        return reset_booking_slots()


class ActionCancelBooking(Action):
    def name(self) -> Text:
        return "action_cancel_booking"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        dispatcher.utter_message(response="utter_booking_cancelled")
        return reset_booking_slots() + [SlotSet("requested_slot", None)]
