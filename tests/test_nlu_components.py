"""Unit tests of the custom NLU components, on the real MiniLM weights (no trained Rasa model needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message

from clinicbot.nlu_gates import UNSURE_KEY, UnsureAnswerFallback
from clinicbot.nlu_sentence_embeddings import MeanPooledLanguageModelFeaturizer, cls_and_mean_pooled
from clinicbot.offline_models import minilm_model_path

HIDDEN = 384  # all-MiniLM-L6-v2
ROOT = Path(__file__).parent.parent


def examples(path: Path) -> list:
    """(label, lower-cased text) of every example in a Rasa NLU YAML file."""
    blocks = yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu") or []
    return [(block["intent"], line.strip()[2:].strip().lower())
            for block in blocks if "examples" in block
            for line in block["examples"].splitlines() if line.strip().startswith("- ")]


def test_the_held_out_set_is_never_trained_on_and_big_enough():
    held_out = examples(ROOT / "tests" / "nlu" / "holdout.yml")
    training = {text for path in (ROOT / "data" / "nlu").glob("*.yml") for _, text in examples(path)}
    assert [text for _, text in held_out if text in training] == []
    faq = [label for label, _ in held_out if label.startswith("faq/")]
    assert len(faq) >= 150
    topics = {label for label, _ in examples(ROOT / "data" / "nlu" / "faq.yml")}
    assert {label: faq.count(label) for label in topics if faq.count(label) < 5} == {}


@pytest.fixture(scope="module")
def featurizer() -> MeanPooledLanguageModelFeaturizer:
    config = {**MeanPooledLanguageModelFeaturizer.get_default_config(), "model_name": "bert",
              "model_weights": str(minilm_model_path())}
    return MeanPooledLanguageModelFeaturizer(config, ExecutionContext(GraphSchema({}), "minilm"))


@pytest.fixture(scope="module")
def tokenizer() -> WhitespaceTokenizer:
    return WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())


def featurize(featurizer, tokenizer, text: str):
    message = Message(data={TEXT: text})
    tokenizer.process([message])
    featurizer.process([message])
    sequence, sentence = message.get_dense_features(TEXT)
    return sequence.features, sentence.features[0]


def test_cls_and_mean_pooled_puts_cls_first_and_a_unit_mean_after_it():
    word_pieces = np.array([[1.0, 0.0], [3.0, 4.0], [2.0, 2.0]])
    vector = cls_and_mean_pooled(word_pieces)
    assert vector[:2].tolist() == [1.0, 0.0]
    assert np.isclose(np.linalg.norm(vector[2:]), 1.0)
    assert np.allclose(vector[2:], np.array([2.0, 2.0]) / np.linalg.norm([2.0, 2.0]))


def test_one_pass_gives_token_vectors_and_the_sentence_transformers_mean_pooled_vector(featurizer, tokenizer):
    text = "why does my back hurt after sex"
    sequence, sentence = featurize(featurizer, tokenizer, text)
    assert sequence.shape == (len(text.split()), HIDDEN)
    assert sentence.shape == (2 * HIDDEN,)
    # The mean-pooled half must be what sentence-transformers computes from the whole text at once.
    encoded = featurizer.tokenizer(text, return_tensors="tf")
    hidden = featurizer.model(**encoded).last_hidden_state.numpy()[0]
    expected = hidden.mean(axis=0) / np.linalg.norm(hidden.mean(axis=0))
    assert np.allclose(sentence[HIDDEN:], expected, atol=1e-4)
    assert np.allclose(sentence[:HIDDEN], hidden[0], atol=1e-4)


def test_paraphrases_are_closer_than_unrelated_questions(featurizer, tokenizer):
    def meaning(text):
        return featurize(featurizer, tokenizer, text)[1][HIDDEN:]

    question = meaning("why does my lower back ache after intercourse")
    paraphrase = meaning("how come my back hurts once we have had sex")
    unrelated = meaning("can I do my physical therapy sessions by video call")
    assert question @ paraphrase > question @ unrelated + 0.2


def selector_output(topic: str, confidence: float) -> dict:
    return {"faq": {"response": {"intent_response_key": topic, "confidence": confidence}}}


@pytest.mark.parametrize(
    "confidence, expected_intent", [(0.29, "nlu_fallback"), (0.31, "faq")]
)
def test_unsure_answer_becomes_an_honest_fallback_below_the_threshold(confidence, expected_intent):
    gate = UnsureAnswerFallback({"retrieval_intent": "faq", "threshold": 0.3})
    message = Message(data={TEXT: "how do I fix my car's brakes", INTENT: {"name": "faq", "confidence": 0.99},
                            "response_selector": selector_output("faq/vaginismus", confidence)})
    gate.process([message])
    assert message.get(INTENT)["name"] == expected_intent
    if expected_intent == "nlu_fallback":
        assert message.get(UNSURE_KEY) == {"topic": "faq/vaginismus", "confidence": confidence}


def test_unsure_answer_gate_leaves_other_intents_alone():
    gate = UnsureAnswerFallback({"retrieval_intent": "faq", "threshold": 0.3})
    message = Message(data={TEXT: "hello", INTENT: {"name": "greet", "confidence": 0.97},
                            "response_selector": selector_output("faq/vaginismus", 0.01)})
    gate.process([message])
    assert message.get(INTENT)["name"] == "greet"
