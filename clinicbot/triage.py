"""Red-flag triage: deterministic, explainable screening of one patient message.

The rules live in data/triage/red_flags.yml (terms -> findings -> rules -> level); this module only
knows how to apply them. spaCy does the language work: tokens, lemmas (legs -> leg, tingles -> tingle),
sentences, the Matcher over our own normalised word forms, and Levenshtein distance for misspellings.

Decision per message:
1. every term phrase is matched on normalised word forms; a match inside a longer match is dropped;
2. each match gets an assertion status from the words around it in its sentence:
   affirmed, negated ("no numbness"), hypothetical ("what if I had numbness") or resolved ("used to");
3. a finding holds when all its terms occur affirmed in one sentence;
4. rules combine findings over the whole message; the highest level wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import yaml

LEVELS = ("EMERGENCY", "URGENT", "BOOKING", "NONE")  # highest first
LEVEL_RANK = {level: rank for rank, level in enumerate(reversed(LEVELS))}  # NONE=0 ... EMERGENCY=3

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "data" / "triage" / "red_flags.yml"

CANON_ATTR = "triage_canon"
PRONOUNS = ["my", "her", "his", "their", "your", "the", "our", "its", "this", "both", "a"]
SUBJECT_STARTS = {"i", "my", "she", "her", "he", "his", "they", "their", "it", "now", "we"}
SENTENCE_PUNCT = {".", "!", "?", ";"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a": 1, "an": 1, "couple": 2}

# Assertion statuses of a matched term.
AFFIRMED, NEGATED, HYPOTHETICAL, RESOLVED = "affirmed", "negated", "hypothetical", "resolved"


@dataclass(frozen=True)
class TermMatch:
    term: str
    start: int
    end: int
    text: str
    sentence: int
    status: str = AFFIRMED


@dataclass(frozen=True)
class TriageResult:
    level: str
    rules: Tuple[str, ...] = ()
    matched: Tuple[str, ...] = ()  # the patient's words behind the decision
    findings: Tuple[str, ...] = ()
    suppressed: Tuple[str, ...] = ()  # alarming words that did not count, with why ("numbness: negated")

    @property
    def rule(self) -> Optional[str]:
        return self.rules[0] if self.rules else None

    def as_dict(self) -> Dict[str, Any]:
        return {
            "level": self.level,
            "rule": self.rule,
            "rules": list(self.rules),
            "matched": list(self.matched),
            "findings": list(self.findings),
            "suppressed": list(self.suppressed),
        }


@dataclass
class _Rule:
    name: str
    level: str
    requires: List[Tuple[int, List[str]]]  # (at_least, findings)


@dataclass
class _Cues:
    negation: List[List[Set[str]]] = field(default_factory=list)
    clause_breaks: List[List[Set[str]]] = field(default_factory=list)
    hypothetical: List[List[Set[str]]] = field(default_factory=list)
    resolved_before: List[List[Set[str]]] = field(default_factory=list)
    resolved_after: List[List[Set[str]]] = field(default_factory=list)


class RedFlagTriage:
    """Applies the rules file to text. Build once (loading spaCy takes a second); `assess` is thread-safe."""

    def __init__(self, nlp, config: Dict[str, Any]) -> None:
        from spacy.matcher import Matcher
        from spacy.tokens import Token

        if not Token.has_extension(CANON_ATTR):
            Token.set_extension(CANON_ATTR, default=None)
        self.nlp = nlp
        self.spellings = {k.lower(): str(v).lower() for k, v in (config.get("spellings") or {}).items()}
        self.vocabulary: Set[str] = set()

        self._term_patterns: Dict[str, List[List[Dict[str, Any]]]] = {}
        for term, phrases in config["terms"].items():
            self._term_patterns[term] = [self._compile(str(phrase)) for phrase in phrases]
        context = config.get("context") or {}
        self.past_counts = set(context.get("past_counts") or [])
        self.reporting_words = {str(word).lower() for word in context.get("reporting_words") or []}
        self.negation_window = int(context.get("negation_window", 6))
        self.hypothetical_window = int(context.get("hypothetical_window", 8))
        self.resolved_window = int(context.get("resolved_window", 8))
        cue_patterns = {
            "NEGATION": context.get("negation_before", []),
            "BREAK": context.get("clause_breaks", []),
            "HYPOTHETICAL": context.get("hypothetical_before", []),
            "RESOLVED_BEFORE": context.get("resolved_before", []),
            "RESOLVED_AFTER": context.get("resolved_after", []),
            "INFORMATIONAL": context.get("informational_question", []),
        }
        self._cue_patterns = {kind: [self._compile(str(p)) for p in phrases] for kind, phrases in cue_patterns.items()}

        self.matcher = Matcher(nlp.vocab)
        for term, patterns in self._term_patterns.items():
            self.matcher.add("TERM:" + term, patterns)
        self.cue_matcher = Matcher(nlp.vocab)
        for kind, patterns in self._cue_patterns.items():
            if patterns:
                self.cue_matcher.add(kind, patterns)

        self.findings: Dict[str, List[List[str]]] = {
            name: [list(alternative) for alternative in alternatives]
            for name, alternatives in config["findings"].items()
        }
        self.rules: List[_Rule] = []
        for rule in config["rules"]:
            requires = []
            for entry in rule["requires"]:
                if isinstance(entry, dict):
                    requires.append((int(entry.get("at_least", 1)), list(entry["any"])))
                else:
                    requires.append((1, list(entry)))
            self.rules.append(_Rule(name=rule["name"], level=rule["level"], requires=requires))
        self._check_references(config)
        # Built once: the spelling correction looks words up in it for every unknown token of every message.
        self._frozen_vocabulary = frozenset(self.vocabulary)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, rules_path: Path = DEFAULT_RULES_PATH, nlp=None) -> "RedFlagTriage":
        if nlp is None:
            from clinicbot.offline_models import load_english

            nlp = load_english()
        config = yaml.safe_load(Path(rules_path).read_text(encoding="utf-8"))
        return cls(nlp, config)

    def _check_references(self, config: Dict[str, Any]) -> None:
        for name, alternatives in self.findings.items():
            for alternative in alternatives:
                for term in alternative:
                    if term not in self._term_patterns:
                        raise ValueError(f"finding {name!r} uses unknown term {term!r}")
        for rule in self.rules:
            if rule.level not in LEVELS:
                raise ValueError(f"rule {rule.name!r} has unknown level {rule.level!r}")
            for _, names in rule.requires:
                for name in names:
                    if name not in self.findings:
                        raise ValueError(f"rule {rule.name!r} uses unknown finding {name!r}")

    def _word_forms(self, word: str) -> Set[str]:
        """A phrase word matches its own form and its lemma, so 'legs' also matches 'leg'.

        Only lemmas that look like the word count: spaCy's lemma of 'worse' is 'bad' and of 'gone'
        is 'go', and letting those in would make 'is that bad' a worsening symptom.
        """
        forms = {word}
        forms.update(lemma for lemma in _lemmatise_words(self.nlp, word) if _related(word, lemma))
        return forms

    def _compile(self, phrase: str) -> List[Dict[str, Any]]:
        pattern: List[Dict[str, Any]] = []
        for raw_word in phrase.lower().split():
            optional = raw_word.startswith("[") and raw_word.endswith("]")
            word = raw_word.strip("[]")
            if word == "<pron>":
                spec: List[Dict[str, Any]] = [{"LOWER": {"IN": PRONOUNS}}]
            elif word == "<num>":
                spec = [{"LIKE_NUM": True}]
            elif word == "<any>":
                spec = [{}]
            elif word.startswith("="):
                spec = [{"LOWER": word[1:]}]
            else:
                # A phrase word may itself split into several tokens ("can't" -> "ca", "n't").
                alternatives = word.split("|")
                token_groups = [self._canon_tokens(alternative) for alternative in alternatives]
                if len(alternatives) > 1 and any(len(group) != 1 for group in token_groups):
                    raise ValueError(f"alternatives must be single words: {phrase!r}")
                if len(alternatives) > 1:
                    forms = set().union(*(group[0] for group in token_groups))
                    spec = [{"_": {CANON_ATTR: {"IN": sorted(forms)}}}]
                else:
                    spec = [{"_": {CANON_ATTR: {"IN": sorted(forms)}}} for forms in token_groups[0]]
            if optional:
                for token_spec in spec:
                    token_spec["OP"] = "?"
            pattern.extend(spec)
        return pattern

    def _canon_tokens(self, word: str) -> List[Set[str]]:
        doc = self.nlp.make_doc(word)
        groups = []
        for token in doc:
            forms = self._word_forms(token.text.lower())
            forms = {self.spellings.get(form, form) for form in forms}
            self.vocabulary.update(forms)
            groups.append(forms)
        return groups

    # -- assessment ---------------------------------------------------------------------------
    def assess(self, text: str) -> TriageResult:
        text = (text or "").strip()
        if not text:
            return TriageResult(level="NONE")
        return self.assess_doc(self.nlp(_normalise_text(text)))

    def assess_doc(self, doc) -> TriageResult:
        for token in doc:
            token._.set(CANON_ATTR, self._canon(token))
        sentence_of = _sentence_index(doc)
        raw_matches = [
            (self.nlp.vocab.strings[match_id][len("TERM:"):], start, end)
            for match_id, start, end in self.matcher(doc)
        ]
        raw_matches = [m for m in raw_matches if self._valid(doc, *m)]
        kept = _drop_contained(raw_matches)
        covered = {i for _, start, end in raw_matches for i in range(start, end)}
        cues = self._cues(doc, covered)
        informational = self._informational_sentences(doc, sentence_of, cues)
        terms = [
            TermMatch(
                term=term,
                start=start,
                end=end,
                text=doc[start:end].text,
                sentence=sentence_of[start],
                status=self._status(start, end, sentence_of, cues, informational),
            )
            for term, start, end in kept
        ]
        findings = self._findings(terms)
        return self._decide(findings, terms)

    def _canon(self, token) -> str:
        lower = self.spellings.get(token.lower_, token.lower_)
        lemma = token.lemma_.lower()
        lemma = self.spellings.get(lemma, lemma)
        if lemma in self.vocabulary and _related(lower, lemma):
            return lemma
        if lower in self.vocabulary:
            return lower
        return self._correct_spelling(lower) or lower

    def _correct_spelling(self, word: str) -> Optional[str]:
        return _closest(word, self._frozen_vocabulary)

    @staticmethod
    def _valid(doc, term: str, start: int, end: int) -> bool:
        """Durations of under three days are not 'more than a few days'; 'eight months ago' is no duration."""
        if term != "persistent":
            return True
        span = doc[start:end]
        if end < len(doc) and doc[end].lower_ == "ago":
            return False
        if not any(token.lower_.startswith("day") for token in span):
            return True
        for token in span:
            value = _number_value(token.lower_)
            if value is not None:
                return value >= 3
        return True

    def _cues(self, doc, covered: Set[int]) -> Dict[str, List[Tuple[int, int]]]:
        cues: Dict[str, List[Tuple[int, int]]] = {
            "NEGATION": [], "BREAK": [], "HYPOTHETICAL": [], "RESOLVED_BEFORE": [], "RESOLVED_AFTER": [],
            "INFORMATIONAL": [],
        }
        for match_id, start, end in self.cue_matcher(doc):
            kind = self.nlp.vocab.strings[match_id]
            # A cue inside a symptom phrase belongs to the symptom ("can't pee", "no feeling", "passed out").
            if kind != "BREAK" and all(i in covered for i in range(start, end)):
                continue
            cues[kind].append((start, end))
        for token in doc:
            if token.text in SENTENCE_PUNCT:
                cues["BREAK"].append((token.i, token.i + 1))
            # ", my groin is numb" starts a new clause; ", tingling or weakness" does not.
            if token.text == "," and token.i + 1 < len(doc) and doc[token.i + 1].lower_ in SUBJECT_STARTS:
                cues["BREAK"].append((token.i, token.i + 1))
        return cues

    def _informational_sentences(self, doc, sentence_of: List[int], cues) -> Set[int]:
        """Questions that ask about a symptom in general, with no I/my/we: 'Can back problems cause numbness?'"""
        informational: Set[int] = set()
        for start, _ in cues["INFORMATIONAL"]:
            sentence = sentence_of[start]
            words = [token for token in doc if sentence_of[token.i] == sentence]
            is_question = any(token.text == "?" for token in words) or words[0].lower_ in {
                "can", "could", "does", "do", "is", "are", "what", "when", "why", "how", "should", "would", "will"
            }
            reports = any(token.lower_ in self.reporting_words for token in words)
            if is_question and not reports:
                informational.add(sentence)
        return informational

    def _status(self, start: int, end: int, sentence_of: List[int], cues, informational: Set[int]) -> str:
        sentence = sentence_of[start]
        if sentence in informational:
            return HYPOTHETICAL
        clause_start = max(
            [e for s, e in cues["BREAK"] if e <= start and sentence_of[s] == sentence] or [0]
        )

        def before(kind: str, window: int) -> bool:
            return any(
                e <= start and s >= clause_start and start - e <= window and sentence_of[s] == sentence
                for s, e in cues[kind]
            )

        if before("RESOLVED_BEFORE", self.resolved_window):
            return RESOLVED
        if any(
            s >= end and s - end <= self.resolved_window and sentence_of[s] == sentence
            for s, e in cues["RESOLVED_AFTER"]
        ):
            return RESOLVED
        if before("NEGATION", self.negation_window):
            return NEGATED
        if before("HYPOTHETICAL", self.hypothetical_window):
            return HYPOTHETICAL
        return AFFIRMED

    def _findings(self, terms: Sequence[TermMatch]) -> Dict[str, List[TermMatch]]:
        """Finding name -> the affirmed term matches that make it hold."""
        by_sentence: Dict[int, Dict[str, List[TermMatch]]] = {}
        for match in terms:
            if match.status == AFFIRMED or (match.status == RESOLVED and match.term in self.past_counts):
                by_sentence.setdefault(match.sentence, {}).setdefault(match.term, []).append(match)
        found: Dict[str, List[TermMatch]] = {}
        for name, alternatives in self.findings.items():
            for sentence_terms in by_sentence.values():
                for alternative in alternatives:
                    if all(term in sentence_terms for term in alternative):
                        evidence = found.setdefault(name, [])
                        for term in alternative:
                            evidence.extend(sentence_terms[term])
        return found

    def _decide(self, findings: Dict[str, List[TermMatch]], terms: Sequence[TermMatch]) -> TriageResult:
        fired: List[Tuple[_Rule, List[TermMatch], List[str]]] = []
        for rule in self.rules:
            evidence: List[TermMatch] = []
            used: List[str] = []
            for at_least, names in rule.requires:
                present = [name for name in names if name in findings]
                if len(present) < at_least:
                    break
                used.extend(present)
                for name in present:
                    evidence.extend(findings[name])
            else:
                fired.append((rule, evidence, used))
        suppressed = tuple(
            sorted({f"{m.text}: {m.status}" for m in terms if m.status != AFFIRMED})
        )
        if not fired:
            return TriageResult(level="NONE", suppressed=suppressed)
        top = max(LEVEL_RANK[rule.level] for rule, _, _ in fired)
        winners = [(rule, evidence, used) for rule, evidence, used in fired if LEVEL_RANK[rule.level] == top]
        matched: List[str] = []
        seen_spans: Set[Tuple[int, int]] = set()
        for _, evidence, _ in winners:
            for match in sorted(evidence, key=lambda m: m.start):
                if (match.start, match.end) not in seen_spans:
                    seen_spans.add((match.start, match.end))
                    matched.append(match.text)
        used_findings: List[str] = []
        for _, _, used in winners:
            used_findings.extend(name for name in used if name not in used_findings)
        return TriageResult(
            level=winners[0][0].level,
            rules=tuple(rule.name for rule, _, _ in winners),
            matched=tuple(matched),
            findings=tuple(used_findings),
            suppressed=suppressed,
        )


def _normalise_text(text: str) -> str:
    # Curly apostrophes from phones ("can’t") tokenise like straight ones only after this.
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _sentence_index(doc) -> List[int]:
    """Sentence number of each token, split at . ! ? ; and line breaks.

    Punctuation rather than the parser: phone messages without punctuation are one sentence, and
    the parser's guesses on them ('... menopause | but I had some bleeding') split findings apart.
    """
    index = []
    number = 0
    for token in doc:
        index.append(number)
        if token.text in SENTENCE_PUNCT or "\n" in token.text:
            number += 1
    return index


def _drop_contained(matches: Iterable[Tuple[str, int, int]]) -> List[Tuple[str, int, int]]:
    """Drop a match that lies strictly inside a longer one ('legs' inside 'between my legs').

    Matches of different terms over exactly the same words are all kept ('vagina' is both a
    saddle-area word and a pelvic site).
    """
    unique = sorted(set(matches), key=lambda m: (-(m[2] - m[1]), m[1]))
    kept: List[Tuple[str, int, int]] = []
    for term, start, end in unique:
        inside_longer = any(
            s <= start and end <= e and (e - s) > (end - start) for _, s, e in kept
        )
        if not inside_longer:
            kept.append((term, start, end))
    return sorted(kept, key=lambda m: (m[1], m[2], m[0]))


def _related(word: str, lemma: str) -> bool:
    """True when a lemma is a form of the word (legs/leg, bled/bleed), not another word (worse/bad)."""
    needed = min(3, len(word), len(lemma))
    return word[:needed] == lemma[:needed]


def _number_value(word: str) -> Optional[int]:
    if word.isdigit():
        return int(word)
    return NUMBER_WORDS.get(word)


@lru_cache(maxsize=4096)
def _closest(word: str, vocabulary: frozenset) -> Optional[str]:
    from spacy.matcher.levenshtein import levenshtein

    if len(word) < 6 or not word.isalpha():
        return None
    allowed = 2 if len(word) >= 9 else 1
    best: Optional[Tuple[int, str]] = None
    for candidate in vocabulary:
        if abs(len(candidate) - len(word)) > allowed or not candidate.isalpha() or len(candidate) < 5:
            continue
        distance = levenshtein(word, candidate, allowed + 1)
        if distance <= allowed and (best is None or (distance, candidate) < best):
            best = (distance, candidate)
    return best[1] if best else None


_LEMMA_CACHE: Dict[str, Set[str]] = {}


def _lemmatise_words(nlp, word: str) -> Set[str]:
    """Lemmas of a phrase word, as the full pipeline would give them in context (noun and verb readings)."""
    if word not in _LEMMA_CACHE:
        forms: Set[str] = set()
        for frame in (word, f"i {word}", f"the {word}"):
            doc = nlp(frame)
            token = doc[-1]
            forms.add(token.lemma_.lower())
        _LEMMA_CACHE[word] = forms
    return _LEMMA_CACHE[word]


_DEFAULT: Optional[RedFlagTriage] = None


def default_triage() -> RedFlagTriage:
    """The process-wide triage built from data/triage/red_flags.yml (lazily: no I/O at import time)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RedFlagTriage.load()
    return _DEFAULT


def _main() -> None:  # pragma: no cover - a small CLI for clinicians trying out wording
    import sys

    triage = default_triage()
    for line in sys.argv[1:] or sys.stdin:
        result = triage.assess(line)
        print(f"{result.level:9} {result.rule or '-':45} {list(result.matched)} {list(result.suppressed)}  <- {line.strip()}")


if __name__ == "__main__":
    _main()
