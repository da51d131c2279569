"""After the Rasa server has given the triage message: record the red flag and answer any question."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import channel_of, latest_triage, log_id, patient_words, user_timestamp
from clinicbot.booking import asks_a_question
from clinicbot.storage import default_store
from clinicbot.triage import TriageRules

logger = logging.getLogger(__name__)

# The classifier's FAQ prediction must be at least this sure before we also answer it after a red flag
# (the same bar as the FallbackClassifier threshold in config.yml).
ANSWER_CONFIDENCE = 0.45
# Booking-level rules that also need "see your doctor" (data/triage/red_flags.yml `see_doctor`).
SEE_DOCTOR = TriageRules.load().see_doctor


class ActionTriageFollowup(Action):
    def name(self) -> Text:
        return "action_triage_followup"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        triage = latest_triage(tracker)
        level = triage.get("level", "NONE")
        matched = triage.get("matched") or []
        try:
            default_store().record_triage(
                conversation_id=tracker.sender_id,
                level=level,
                matched=matched,
                rule=triage.get("rule"),
                channel=channel_of(tracker),
                message_timestamp=user_timestamp(tracker),
            )
        except Exception:  # the patient still gets their answer; the tracker store keeps the triage result
            logger.exception("Could not record triage event for %s", log_id(tracker))

        if level == "EMERGENCY":
            # Nothing may dilute "call 911 now": a question waits until the patient asks it again (then the
            # reminder comes first, clinicbot/triage_policy.py).
            if asks_a_question((tracker.latest_message or {}).get("text")):
                dispatcher.utter_message(response="utter_emergency_questions_later")
        else:
            answer = self._faq_answer(tracker)
            if answer:
                dispatcher.utter_message(response=answer)
            for response in dict.fromkeys(SEE_DOCTOR.get(rule) for rule in triage.get("rules") or []):
                if response:
                    dispatcher.utter_message(response=response)

        # The patient's own words, and what the triage made of them (the console shows the findings in full).
        words = patient_words((tracker.latest_message or {}).get("text"))
        reason = f"{words} [red flag, {level.lower()}]" if words else f"Red flag ({level.lower()})"
        return [SlotSet("triage_level", level), SlotSet("booking_reason", reason)]

    @staticmethod
    def _faq_answer(tracker: Tracker):
        message = tracker.latest_message or {}
        # Below an emergency a confident answer helps ("sex has hurt ever since I had my baby" -> the
        # childbirth answer, then the booking offer).
        classified = (message.get("triage") or {}).get("classified_intent") or {}
        if classified.get("name") != "faq" or (classified.get("confidence") or 0) < ANSWER_CONFIDENCE:
            return None
        selected = ((message.get("response_selector") or {}).get("faq") or {}).get("response") or {}
        return selected.get("utter_action")
