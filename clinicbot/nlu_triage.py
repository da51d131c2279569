"""Red-flag triage inside the Rasa server, as the last NLU component.

It screens every typed message (button payloads like "/affirm" skip NLU and carry no symptoms) and,
when a red flag is found, replaces the intent with red_flag_emergency / red_flag_urgent /
red_flag_booking. Rules map those intents to plain responses, so the emergency instruction needs
neither the action server nor the database. The full triage result, with the words that matched,
every finding with its status and detector (`details`) and the intent the classifier had predicted,
goes into the parse data (`triage`), which the tracker store keeps with the user message; the dialogue
policy clinicbot/triage_policy.py combines those findings across the conversation.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from clinicbot.triage import RedFlagTriage

TRIAGE_KEY = "triage"
RED_FLAG_INTENTS = {
    "EMERGENCY": "red_flag_emergency",
    "URGENT": "red_flag_urgent",
    "BOOKING": "red_flag_booking",
}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class RedFlagTriageClassifier(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"rules_file": None}  # None: data/triage/red_flags.yml

    def __init__(self, config: Dict[Text, Any]) -> None:
        self._config = config
        self._triage: Optional[RedFlagTriage] = None

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "RedFlagTriageClassifier":
        component = cls(config)
        component.triage  # load spaCy and the rules now, so the first patient does not wait for them
        return component

    @property
    def triage(self) -> RedFlagTriage:
        if self._triage is None:
            rules_file = self._config.get("rules_file")
            self._triage = RedFlagTriage.load(rules_file) if rules_file else RedFlagTriage.load()
        return self._triage

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            self._screen(message)
        return messages

    def _screen(self, message: Message) -> None:
        text = message.get(TEXT) or ""
        result = self.triage.assess(text)
        predicted = message.get(INTENT) or {}
        details = dict(result.as_dict(), classified_intent=predicted)
        message.set(TRIAGE_KEY, details, add_to_output=True)
        if result.level not in RED_FLAG_INTENTS:
            return
        red_flag = {"name": RED_FLAG_INTENTS[result.level], "confidence": 1.0}
        ranking = [red_flag] + [r for r in (message.get(INTENT_RANKING_KEY) or []) if r.get("name") != red_flag["name"]]
        message.set(INTENT, red_flag, add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
