"""Handoff to a person and feedback on answers: both leave a record for the staff console."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.common import channel_of, log_id
from clinicbot.storage import default_store

logger = logging.getLogger(__name__)


class ActionHandoff(Action):
    def name(self) -> Text:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        note = (tracker.latest_message or {}).get("text")
        try:
            default_store().record_handoff(tracker.sender_id, channel_of(tracker), note)
        except Exception:
            logger.exception("Could not flag conversation %s for follow-up", log_id(tracker))
            dispatcher.utter_message(response="utter_handoff_not_flagged")
            return []
        dispatcher.utter_message(response="utter_handoff")
        return []


class ActionFlagSafeguarding(Action):
    """After a safeguarding reply (given by the Rasa server): put the conversation in staff's follow-up queue.

    Silent to the patient: the reply has already told them the clinic team knows. The note says what kind of
    disclosure it was, not the patient's words (they stay in the transcript, behind the console's sign-in).
    """

    def name(self) -> Text:
        return "action_flag_safeguarding"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        kinds = ((tracker.latest_message or {}).get("triage") or {}).get("safeguarding") or []
        note = "Safeguarding: " + (", ".join(kinds) or "disclosure earlier in the conversation").replace("_", " ")
        try:
            default_store().record_handoff(tracker.sender_id, channel_of(tracker), note)
        except Exception:  # the patient already has the helplines; the transcript still shows the disclosure
            logger.exception("Could not flag conversation %s for safeguarding follow-up", log_id(tracker))
        # From now on no answer suggests involving a partner (clinical-red-flags.md, "Safeguarding").
        return [SlotSet("abuse_disclosed", True)] if {"abuse", "sexual_assault"} & set(kinds) else []


def last_answered_topic(tracker: Tracker) -> Optional[str]:
    """The FAQ topic of the last answer the bot gave (bot events carry the response name)."""
    for event in reversed(tracker.events):
        if event.get("event") != "bot":
            continue
        utter_action = (event.get("metadata") or {}).get("utter_action") or ""
        if utter_action.startswith("utter_faq/"):
            return utter_action[len("utter_faq/"):]
    return None


HELPFUL_INTENTS = {"feedback_helpful", "affirm"}


class ActionRecordFeedback(Action):
    def name(self) -> Text:
        return "action_record_feedback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[Text, Any]) -> List[Dict]:
        # The buttons send feedback_*; a typed "yes" or "no" to "Did that answer your question?" comes as affirm/deny.
        helpful = (tracker.latest_message or {}).get("intent", {}).get("name") in HELPFUL_INTENTS
        topic = last_answered_topic(tracker)
        if topic:
            try:
                default_store().record_feedback(tracker.sender_id, topic, helpful)
            except Exception:
                logger.exception("Could not record feedback for %s", log_id(tracker))
        dispatcher.utter_message(response="utter_feedback_thanks" if helpful else "utter_feedback_sorry")
        return []
