"""The semantic finding detector: clauses that read like a clinician-reviewed example phrase raise a finding.

The word list (data/triage/red_flags.yml) only knows phrasings somebody listed; patients describe the same
sign in endless ways ("woke up wet", "messed myself", "my taint is numb", "have to strain to get it going").
This detector embeds each clause of a message with all-MiniLM-L6-v2 (the sentence model the NLU pipeline
already ships) and compares it with example phrases per finding in data/triage/exemplars.yml:

- a clause raises a finding when its cosine similarity to one of the finding's `like` phrases reaches the
  threshold, and it is closer to that phrase than to every `unlike` phrase (near misses a clinician does
  not want flagged: stress leakage when sneezing, a leg that went numb sitting cross-legged);
- its status (negated, resolved, hypothetical) comes from the lexicon's cues for the clause (clinicbot/triage.py),
  because sentence embeddings barely see negation ("no numbness down there" scores 0.9 against "numbness
  down there");
- which example phrase it matched, and how closely, is kept so a clinician can see why.

A second reader in the same pass (session 4) is learned: one logistic regression per finding over the same
clause vectors, trained on the clinician's phrases and on phrases three more independent authors wrote
(data/triage/exemplars_by_author/). It raises a finding only when it is very sure (`learned.probability` in the
exemplars file, 0.95), and the finding says so (detector "learned", score = its probability). The authors' phrases
train the classifier only; nearness uses the clinician-reviewed phrases alone.

Any detector can raise a finding; the rules decide the level from the findings as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from clinicbot.triage import LEARNED, SEMANTIC, Finding, _sentence_index

DEFAULT_EXEMPLARS_PATH = Path(__file__).resolve().parent.parent / "data" / "triage" / "exemplars.yml"

# Words that start a new clause inside a sentence ("back's bad but I can't feel the toilet paper").
CLAUSE_STARTERS = {"but", "also", "plus", "then", "so", "because", "cos", "cuz", "though", "although", "anyway",
                   "and", "or", "while", "which", "like", "tho", "now", "after", "when"}
SUBJECTS = {"i", "my", "she", "her", "he", "his", "they", "their", "it", "its", "it's", "we", "our", "there",
            "now", "this", "the", "im", "i'm", "ive", "i've", "me"}
MAX_SEGMENTS = 14  # a very long message is screened on its first clauses and pairs; the lexicon sees all of it
LONG_CLAUSE = 10  # tokens: a clause longer than this is also read in pieces
MAX_PIECES = 12
MAX_WORD_PIECES = 64


@dataclass
class _FindingExamples:
    like: np.ndarray
    like_text: List[str]
    unlike: Optional[np.ndarray]
    threshold: float
    classifier: Any = None  # when the file asks for one: logistic regression over the phrases' vectors
    more_like: Optional[np.ndarray] = None  # other authors' phrases: training data for the classifier only
    more_unlike: Optional[np.ndarray] = None


class MiniLMEncoder:
    """Mean-pooled, unit-length all-MiniLM-L6-v2 sentence vectors (as sentence-transformers computes them)."""

    def __init__(self, model_path: Optional[Path] = None) -> None:
        import tensorflow as tf
        from transformers import BertTokenizerFast, TFBertModel

        from clinicbot.offline_models import minilm_model_path

        path = str(model_path or minilm_model_path())
        self.tokenizer = BertTokenizerFast.from_pretrained(path)
        model = TFBertModel.from_pretrained(path)
        spec = tf.TensorSpec(shape=[None, None], dtype=tf.int32)

        @tf.autograph.experimental.do_not_convert
        def forward(token_ids, mask):
            return model(token_ids, attention_mask=mask, training=False)[0]

        # One traced graph for any batch and length (eager Keras spends most of the time in Python).
        self._forward = tf.function(forward, input_signature=[spec, spec])
        self._tf = tf

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_WORD_PIECES,
                               return_tensors="np")
        ids = self._tf.constant(batch["input_ids"], dtype=self._tf.int32)
        mask = self._tf.constant(batch["attention_mask"], dtype=self._tf.int32)
        vectors = self._forward(ids, mask).numpy()
        weights = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (vectors * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)


class SemanticFindingDetector:
    def __init__(self, encoder, config: Dict) -> None:
        self.encoder = encoder
        default_threshold = float(config.get("threshold", 0.6))
        self.examples: Dict[str, _FindingExamples] = {}
        for name, spec in (config.get("findings") or {}).items():
            like = [str(p) for p in spec.get("like") or []]
            unlike = [str(p) for p in spec.get("unlike") or []]
            more_like = list(spec.get("more_like") or [])
            more_unlike = list(spec.get("more_unlike") or [])
            if not like:
                continue
            self.examples[name] = _FindingExamples(
                like=encoder.encode(like), like_text=like,
                unlike=encoder.encode(unlike) if unlike else None,
                threshold=float(spec.get("threshold", default_threshold)),
                more_like=encoder.encode(more_like) if more_like else None,
                more_unlike=encoder.encode(more_unlike) if more_unlike else None,
            )

        self.probability = 1.0  # no classifier: nothing is raised by learning
        learned = config.get("learned") or {}
        suspect = learned.get("suspect") or {}
        self.suspect_probability = float(suspect.get("probability", 1.0))
        self.suspect_findings = set(suspect.get("findings") or [])
        self.suspect_as = suspect.get("as")
        if learned:
            self._train(learned)

    def _train(self, learned: Dict) -> None:
        """One logistic regression per finding: its `like` phrases against its `unlike` phrases and the other
        findings' phrases (except findings of the same family, which may share wording)."""
        from sklearn.linear_model import LogisticRegression

        families = [set(family) for family in learned.get("families") or []]
        self.probability = float(learned.get("probability", 0.5))

        def phrases(*arrays) -> np.ndarray:
            return np.vstack([a for a in arrays if a is not None and len(a)])

        for name, examples in self.examples.items():
            family = next((f for f in families if name in f), {name})
            positive = phrases(examples.like, examples.more_like)
            negative = phrases(examples.unlike, examples.more_unlike, *(
                phrases(other.like, other.more_like) for other_name, other in self.examples.items()
                if other_name not in family))
            features = np.vstack([positive, negative])
            labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
            model = LogisticRegression(C=float(learned.get("C", 4.0)), class_weight="balanced", max_iter=2000)
            examples.classifier = model.fit(features, labels)

    @property
    def finding_names(self) -> List[str]:
        return list(self.examples)

    @classmethod
    def load(cls, path: Path = DEFAULT_EXEMPLARS_PATH, encoder=None) -> "SemanticFindingDetector":
        path = Path(path)
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        folder = config.get("more_examples_in")
        if folder:
            config = with_author_examples(config, sorted((path.parent / folder).glob("*.yml")))
        return cls(encoder or _shared_encoder(), config)

    def detect(self, doc, status_of: Callable[[int, int], str], turn: int = 0) -> List[Finding]:
        clauses = clause_segments(doc)
        if not clauses:
            return []
        segments = clauses + run_on_pieces(doc, clauses)
        vectors = self.encoder.encode([doc[start:end].text for start, end in segments])
        found: List[Finding] = []
        suspected = set()
        for name, examples in self.examples.items():
            like_scores = vectors @ examples.like.T
            unlike_best = (vectors @ examples.unlike.T).max(axis=1) if examples.unlike is not None else None
            probability = examples.classifier.predict_proba(vectors)[:, 1] if examples.classifier is not None else None
            seen_status = set()
            for index in np.argsort(-like_scores.max(axis=1)):
                best = float(like_scores[index].max())
                near = best >= examples.threshold and (unlike_best is None or unlike_best[index] < best)
                learned = probability is not None and probability[index] >= self.probability
                if not (near or learned):
                    if (self.suspect_as and name in self.suspect_findings and probability is not None
                            and probability[index] >= self.suspect_probability):
                        # suspected, not established: a finding that raises no level but asks the safety question
                        start, end = segments[index]
                        status = status_of(start, end)
                        if status not in suspected:
                            suspected.add(status)
                            found.append(Finding(name=self.suspect_as, status=status, words=doc[start:end].text,
                                                 detector=LEARNED, turn=turn, score=float(probability[index]),
                                                 span=(start, end)))
                    continue
                detector = SEMANTIC if near else LEARNED
                if not near:
                    best = float(probability[index])  # what a clinician sees: how sure the classifier was
                start, end = segments[index]
                status = status_of(start, end)
                if status in seen_status:
                    continue
                seen_status.add(status)
                found.append(Finding(name=name, status=status, words=doc[start:end].text, detector=detector,
                                     turn=turn, score=best, span=(start, end)))
        return found

    def explain(self, text: str, name: str) -> Tuple[float, str]:
        """The closest example phrase of a finding to a text, and its similarity (for clinicians and tests)."""
        vector = self.encoder.encode([text])[0]
        examples = self.examples[name]
        scores = examples.like @ vector
        return float(scores.max()), examples.like_text[int(scores.argmax())]


def with_author_examples(config: Dict, files: Sequence[Path]) -> Dict:
    """The exemplars plus the phrases independent authors wrote for the findings the exemplars file lists
    (phrases for other findings stay in the authors' files, unused, until a finding is added here)."""
    merged = {name: {**spec, "more_like": [], "more_unlike": []} for name, spec in (config.get("findings") or {}).items()}
    for file in files:
        for name, spec in (yaml.safe_load(file.read_text(encoding="utf-8")).get("findings") or {}).items():
            if name in merged:
                merged[name]["more_like"] += [str(p) for p in spec.get("like") or []]
                merged[name]["more_unlike"] += [str(p) for p in spec.get("unlike") or []]
    return {**config, "findings": merged}


def clause_segments(doc) -> List[Tuple[int, int]]:
    """Token spans to embed: each clause, and each pair of neighbouring clauses in a sentence.

    Phone messages run sentences together ("my back is wrecked and now i cant get my wee to start"), and a
    sign's parts can straddle a comma ("my bum, my privates and my inner thighs, all numb"): clauses keep a
    buried sign from being averaged away by a long question around it; pairs keep a sign split in two whole.
    """
    sentence_of = _sentence_index(doc)
    clauses: List[Tuple[int, int]] = []
    start = 0
    for token in doc:
        i = token.i
        if i > start and i + 1 <= len(doc):
            boundary = sentence_of[i] != sentence_of[i - 1]
            following = doc[i + 1].lower_ if i + 1 < len(doc) else ""
            if token.lower_ in CLAUSE_STARTERS and token.lower_ not in {"and", "or", "like", "now", "after", "when"}:
                boundary = True
            elif token.lower_ in {"and", "or", "now"} and following in SUBJECTS:
                boundary = True
            elif token.text == "," and following in SUBJECTS | CLAUSE_STARTERS:
                boundary = True
            if boundary:
                if any(not t.is_punct for t in doc[start:i]):
                    clauses.append((start, i))
                start = i
    if any(not t.is_punct for t in doc[start:len(doc)]):
        clauses.append((start, len(doc)))
    segments = list(clauses)
    for (a_start, a_end), (b_start, b_end) in zip(clauses, clauses[1:]):
        if sentence_of[a_start] == sentence_of[b_start]:
            segments.append((a_start, b_end))
    return segments[:MAX_SEGMENTS]


def run_on_pieces(doc, segments: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """A long run-on clause ("strong pain in the low back since the weekend, today I stayed wet in the bed") in
    its comma-separated pieces, so that a sign is not averaged away by its neighbour. Not at "and": that tore
    "my right foot and leg have numbed" into a piece that read as both legs."""
    pieces: List[Tuple[int, int]] = []
    for start, end in segments:  # clause_segments(doc), already computed by the caller
        if end - start > LONG_CLAUSE:
            pieces += [piece for piece in _pieces(doc, start, end) if piece != (start, end) and piece not in pieces]
    return pieces[:MAX_PIECES]


def _pieces(doc, start: int, end: int) -> List[Tuple[int, int]]:
    pieces, piece_start = [], start
    for token in doc[start:end]:
        if token.i > piece_start and (token.text in {",", ";"} or token.lower_ in {"till", "until"}):
            if sum(not t.is_punct for t in doc[piece_start:token.i]) >= 3:
                pieces.append((piece_start, token.i))
            piece_start = token.i + (1 if token.text in {",", ";"} else 0)
    if sum(not t.is_punct for t in doc[piece_start:end]) >= 3:
        pieces.append((piece_start, end))
    return pieces


_ENCODER: Optional[MiniLMEncoder] = None


def _shared_encoder() -> MiniLMEncoder:
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = MiniLMEncoder()
    return _ENCODER
