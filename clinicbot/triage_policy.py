"""Conversation-level triage inside the Rasa server: a small dialogue policy that reads the tracker.

The NLU component (clinicbot/nlu_triage.py) screens each message and stores its findings, with status, in
the message's parse data. A red flag that only becomes clear across messages ("my back's been bad" ...
"and I can't feel the paper when I wipe") is invisible to it. This policy, at every user turn, combines the
findings of all the conversation's messages with the same rules (clinicbot/triage.py TriageRules) and:

1. when the conversation's level is higher than what the message alone showed and than any advice already
   given, gives that level's advice first (the same responses and follow-up as the rules in data/rules/triage.yml);
2. after the emergency advice, while the emergency findings stand, repeats the instruction first on every
   later turn (a booking request, "it's probably nothing", a question), then lets the patient's request go on;
3. when a message suggests a sign without establishing it (back pain and "my legs feel funny"), answers
   what they asked and then asks one safety-net question with Yes/No buttons (once per conversation); Yes
   counts as the sign, No is recorded and the conversation carries on;
4. when the patient discloses self-harm, abuse or sexual assault, replies first with warmth and the right
   helplines (once per conversation and kind), then any red-flag advice, and flags the conversation for staff;
5. records the conversation's triage (level, rules, each finding with its turn, status and detector) in the
   `triage_conversation` slot, so it is in the tracker store, survives a restart and staff see it.

It needs neither the action server nor the database, like the per-message emergency instruction. It predicts
with confidence 1 and a priority above the RulePolicy's, and abstains otherwise.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from clinicbot.nlu_gates import TOO_LONG_KEY
from clinicbot.triage import ADVICE_RESPONSES as ADVICE_ACTIONS, AFFIRMED, LEVEL_RANK, NEGATED, Finding, TriageRules

SAFETY_NET = "safety_net"  # the detector of a finding the patient confirmed or denied by answering a question

CONVERSATION_SLOT = "triage_conversation"
ADVICE_PLANS = {
    "EMERGENCY": ["utter_triage_emergency", "action_triage_followup"],
    "URGENT": ["utter_triage_urgent", "action_triage_followup", "utter_offer_follow_up_booking"],
    "BOOKING": ["utter_triage_booking", "action_triage_followup", "utter_offer_booking"],
}
BOOKING_OFFERS = {"utter_offer_booking", "utter_offer_follow_up_booking"}
# After the repeated emergency instruction, what the patient asked for still happens.
AFTER_REMINDER = {
    "book_appointment": ["booking_form"],
    "faq": ["utter_faq"],
    "ask_human": ["action_handoff"],
}
# Actions Rasa runs by itself after a user message; they are not part of a plan.
IGNORED_ACTIONS = {"action_extract_slots", "action_session_start"}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=False)
class ConversationTriagePolicy(Policy):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        # Above the RulePolicy (6): when the conversation needs more care than the message, this wins.
        return {"priority": 7, "rules_file": None}

    def __init__(
        self,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        featurizer=None,
    ) -> None:
        super().__init__(config, model_storage, resource, execution_context, featurizer)
        rules_file = config.get("rules_file")
        self.rules = TriageRules.load(rules_file) if rules_file else TriageRules.load()

    def train(self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any) -> Resource:
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        events = list(tracker.applied_events())
        user_index = next((i for i in range(len(events) - 1, -1, -1) if isinstance(events[i], UserUttered)), None)
        if user_index is None:
            return self._abstain(domain)
        turns = conversation_findings(events[: user_index + 1])
        latest = events[user_index]
        intent = (latest.intent or {}).get("name")
        answered = self._safety_net_answer(events[:user_index], intent, len(turns) - 1)
        if answered is not None:
            turns[-1].append(answered)
        result = self.rules.combine(turns)
        message_level = ((latest.parse_data or {}).get("triage") or {}).get("level") or "NONE"
        advised = max(
            (ADVICE_ACTIONS[e.action_name] for e in events[:user_index]
             if isinstance(e, ActionExecuted) and e.action_name in ADVICE_ACTIONS),
            key=LEVEL_RANK.get, default="NONE",
        )
        plan = self._plan(result.level, message_level, advised, intent, tracker.active_loop_name)
        if answered is not None and answered.status == NEGATED and not plan:
            plan = ["utter_safety_net_no"]
        elif not tracker.active_loop_name:
            question = self._safety_net_question(result, events[:user_index])
            if question:
                if not plan:
                    # what the rules would have said for this message (data/rules/), then the question
                    plan = list(ADVICE_PLANS.get(message_level) or (["utter_faq"] if intent == "faq" else []))
                plan = [step for step in plan if step not in BOOKING_OFFERS] + [question]
        if not plan and message_level == "NONE" and TOO_LONG_KEY in (latest.parse_data or {}):
            # Only the first part was read (clinicbot/nlu_gates.py): ask kindly for a shorter message rather than
            # answer half of it. A red flag in the part that was read gets its advice instead (the rules give it).
            plan = ["utter_message_too_long"] + ([tracker.active_loop_name] if tracker.active_loop_name else [])
        safeguarding = self._safeguarding_replies(result, events[:user_index])
        if safeguarding:
            # Warmth and the helplines come first, then any red-flag advice; the conversation is flagged for staff.
            loop = [tracker.active_loop_name] if tracker.active_loop_name else []
            advice = [step for step in plan if step not in BOOKING_OFFERS and step != tracker.active_loop_name]
            plan = safeguarding + advice + ["action_flag_safeguarding"] + loop
        done = [e.action_name for e in events[user_index + 1:]
                if isinstance(e, ActionExecuted) and e.action_name not in IGNORED_ACTIONS]
        record = []
        if not done:
            summary = conversation_summary(result, len(turns) - 1)
            if tracker.get_slot(CONVERSATION_SLOT) != summary:
                record = [SlotSet(CONVERSATION_SLOT, summary)]
        if not plan or done != plan[: len(done)]:
            return self._abstain(domain, record)
        if len(done) < len(plan):
            return self._predict(domain, plan[len(done)], record)
        if plan[-1] in domain.form_names:
            return self._abstain(domain, record)  # the form and its rules take over
        return self._predict(domain, ACTION_LISTEN_NAME, record)

    def _safety_net_answer(self, before, intent: Optional[str], turn: int) -> Optional[Finding]:
        """A Yes or No (button or typed) to the safety-net question the bot just asked, as a finding."""
        last_bot = next((e.action_name for e in reversed(before) if isinstance(e, ActionExecuted)
                         and e.action_name not in IGNORED_ACTIONS | {ACTION_LISTEN_NAME}), None)
        for net in self.rules.safety_nets.values():
            if last_bot == net["asks"] and intent in ("affirm", "deny"):
                return Finding(name=net["yes_means"], status=AFFIRMED if intent == "affirm" else NEGATED,
                               words=f"answered {'yes' if intent == 'affirm' else 'no'} to {net['asks']}",
                               detector=SAFETY_NET, turn=turn)
        return None

    def _safety_net_question(self, result, before) -> Optional[str]:
        """The question to ask, if a sign is suggested but not established and it was not asked before."""
        if result.level == "EMERGENCY":
            return None
        asked = {e.action_name for e in before if isinstance(e, ActionExecuted)}
        present = {f.name for f in result.details if f.status == AFFIRMED}
        retracted = {f.name for f in result.details if f.status != AFFIRMED}
        for net in self.rules.safety_nets.values():
            suggested = net["suggested_by"] in present and net["suggested_by"] not in retracted
            if suggested and set(net.get("when_any", [])) & present and net["asks"] not in asked:
                return net["asks"]
        return None

    def _safeguarding_replies(self, result, before) -> List[str]:
        """The safeguarding replies a disclosure in this conversation needs and has not had yet."""
        given = {e.action_name for e in before if isinstance(e, ActionExecuted)}
        replies = [self.rules.safeguarding[name] for name in result.safeguarding]
        return [reply for reply in replies if reply not in given]

    @staticmethod
    def _plan(level: str, message_level: str, advised: str, intent: Optional[str], active_loop: Optional[str]) -> List[str]:
        if LEVEL_RANK[level] > max(LEVEL_RANK[message_level], LEVEL_RANK[advised]):
            plan = list(ADVICE_PLANS[level])
            if active_loop:
                # In the middle of the booking form: advice first, then the form goes on (as in data/rules/booking.yml).
                return [step for step in plan if step not in BOOKING_OFFERS] + [active_loop]
            return plan
        if level == "EMERGENCY" and advised == "EMERGENCY" and message_level != "EMERGENCY" and not active_loop:
            return ["utter_triage_emergency_reminder"] + AFTER_REMINDER.get(intent or "", [])
        return []

    def _predict(self, domain: Domain, action: str, events: List) -> PolicyPrediction:
        probabilities = self._default_predictions(domain)
        probabilities[domain.index_for_action(action)] = 1.0
        return self._prediction(probabilities, events=events)

    def _abstain(self, domain: Domain, events: Optional[List] = None) -> PolicyPrediction:
        return self._prediction(self._default_predictions(domain), events=events or [])


def conversation_findings(events) -> List[List[Finding]]:
    """Each user message's findings, in order, from the triage result the NLU component stored with it."""
    turns: List[List[Finding]] = []
    for event in events:
        if isinstance(event, UserUttered):
            details = ((event.parse_data or {}).get("triage") or {}).get("details") or []
            turn = len(turns)
            turns.append([Finding.from_dict(detail, turn=turn) for detail in details])
    return turns


def conversation_summary(result, last_turn: int) -> Dict[str, Any]:
    """What the slot keeps for staff: the level, the rules, and every finding with its turn (1 = first message)."""
    return {
        "level": result.level,
        "rules": list(result.rules),
        "turn": last_turn + 1,
        "findings": [
            {"name": f.name, "status": f.status, "words": f.words, "detector": f.detector, "turn": f.turn + 1}
            for f in result.details
        ],
        "used": list(result.findings),
    }
