"""The Rasa server's response generator (endpoints.yml `nlg`): domain.yml's responses, plus two things every
channel needs and no single action owns.

1. **The disclaimer at the start of every conversation.** The first message the bot sends in a session ends
   with `utter_disclaimer`, on every channel, whatever the patient wrote first (not only after a greeting). Not
   on or after emergency or same-day advice or a safeguarding reply: "this is not medical advice" must never follow
   "call 911 now", "get checked today" or a crisis line, so a session that starts with one never gets it; the
   advice's own wording stands (docs/content-decisions.md D18).
2. **The clinic's details and helplines** (clinicbot/settings.py, from the environment) fill `{clinic_phone}`,
   `{crisis_line}` ... in every response, so a clinic outside the US changes them in one place.

It runs inside the Rasa server, so it works when the action server is down.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Text

from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import BotUttered, SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from clinicbot.settings import Settings, load_settings
from clinicbot.triage import LEVEL_RANK

DISCLAIMER = "utter_disclaimer"
_REMEMBERED_STEPS = 10_000  # conversations in flight at once, at most; older entries are long finished


def template_values(settings: Settings) -> Dict[str, str]:
    """What responses may name: the clinic's details and the helplines."""
    clinic = settings.clinic
    return {
        "clinic_name": clinic.name,
        "clinic_phone": clinic.phone,
        "clinic_hours": clinic.hours,
        "clinic_email": clinic.email,
        "clinic_booking_url": clinic.booking_url,
        **settings.helplines.as_template_values(),
    }


def _is_advice(custom: Optional[Dict[str, Any]]) -> bool:
    """An emergency or same-day instruction, or a safeguarding reply (their `custom` in domain.yml says which):
    nothing may water it down."""
    custom = custom or {}
    return "safeguarding" in custom or LEVEL_RANK.get(custom.get("triage_level"), 0) >= LEVEL_RANK["URGENT"]


class ClinicNaturalLanguageGenerator(TemplatedNaturalLanguageGenerator):
    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, domain: Optional[Domain] = None) -> None:
        super().__init__((domain or Domain.empty()).responses)
        # Read once, when the Rasa server starts (as the channels read theirs): not on every response.
        self._values = template_values(load_settings())
        # An action that sends several messages asks for them one by one with the same tracker: only the first
        # gets the disclaimer. Keyed by conversation and the number of events so far (one step of one turn).
        self._given_at: "OrderedDict[Text, int]" = OrderedDict()

    async def generate(
        self, utter_action: Text, tracker: DialogueStateTracker, output_channel: Text, **kwargs: Any
    ) -> Optional[Dict[Text, Any]]:
        values = {**self._values, **kwargs}
        message = await super().generate(utter_action, tracker, output_channel, **values)
        if message is None or utter_action == DISCLAIMER or not self._disclaimer_due(message, tracker):
            return message
        disclaimer = await super().generate(DISCLAIMER, tracker, output_channel, **values)
        if disclaimer and disclaimer.get("text"):
            # One line break: Rasa's output channels split a text at a blank line into separate messages.
            message["text"] = f"{(message.get('text') or '').rstrip()}\n{disclaimer['text'].strip()}"
            self._given_at[tracker.sender_id] = len(tracker.events)
            while len(self._given_at) > _REMEMBERED_STEPS:
                self._given_at.popitem(last=False)
        return message

    def _disclaimer_due(self, message: Dict[Text, Any], tracker: DialogueStateTracker) -> bool:
        if _is_advice(message.get("custom")):
            return False
        if self._given_at.get(tracker.sender_id) == len(tracker.events):
            return False  # the same action's earlier message has it
        for event in reversed(tracker.events):
            if isinstance(event, SessionStarted):
                break
            if isinstance(event, BotUttered):
                # Any earlier message in this session: either it carried the disclaimer, or it was advice that
                # must not be followed by one.
                return False
        self._given_at.pop(tracker.sender_id, None)
        return True
