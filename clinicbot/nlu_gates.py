"""Gates in the NLU pipeline: a cap on what a message may cost, and an honest fallback when unsure.

MessageLengthGate (first in the pipeline): spaCy, MiniLM and the triage cost time in proportion to a message's
length, and one Rasa server serves every patient, so a 20 MB message would stall them all. Beyond
MESSAGE_MAX_CHARS the rest of the pipeline sees only the first part; the conversation policy then asks the
patient kindly for a shorter message, unless that first part already holds a red flag, whose advice comes first.
The whole message stays in the conversation for staff (request bodies are capped at REQUEST_MAX_BYTES).

UnsureAnswerFallback: an honest fallback when the bot is unsure which article answer fits.

DIET is confident that almost any question is an FAQ (most training examples are), so its intent
confidence alone lets off-topic questions ("how do I fix my car's brakes") through to some answer.
The ResponseSelector's confidence in the chosen answer separates them much better: below
`threshold` the message becomes nlu_fallback and the patient is told plainly that the bot is not sure.
The threshold is tuned on the held-out set (docs/nlu-evaluation.md).
"""
from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from clinicbot.settings import load_settings

UNSURE_KEY = "unsure_answer"
TOO_LONG_KEY = "message_too_long"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class MessageLengthGate(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    @classmethod
    def create(
        cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> "MessageLengthGate":
        return cls(load_settings().message_max_chars)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            if len(text) > self.max_chars:
                message.set(TEXT, text[: self.max_chars])
                message.set(TOO_LONG_KEY, {"characters": len(text), "read": self.max_chars}, add_to_output=True)
        return messages


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class UnsureAnswerFallback(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"retrieval_intent": "faq", "threshold": 0.3}

    def __init__(self, config: Dict[Text, Any]) -> None:
        self.retrieval_intent = config["retrieval_intent"]
        self.threshold = float(config["threshold"])

    @classmethod
    def create(
        cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> "UnsureAnswerFallback":
        return cls(config)

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            intent = message.get(INTENT) or {}
            if intent.get("name") != self.retrieval_intent:
                continue
            selected = ((message.get("response_selector") or {}).get(self.retrieval_intent) or {}).get("response") or {}
            confidence = float(selected.get("confidence") or 0.0)
            if confidence >= self.threshold:
                continue
            message.set(UNSURE_KEY, {"topic": selected.get("intent_response_key"), "confidence": confidence}, add_to_output=True)
            fallback = {"name": "nlu_fallback", "confidence": 1.0 - confidence}
            ranking = [fallback] + list(message.get(INTENT_RANKING_KEY) or [])
            message.set(INTENT, fallback, add_to_output=True)
            message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
        return messages
