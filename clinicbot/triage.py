"""Red-flag triage: explainable screening of a patient's messages, one at a time and as a conversation.

The rules live in data/triage/red_flags.yml (terms -> findings -> rules -> level); this module only
knows how to apply them. spaCy does the language work: tokens, lemmas (legs -> leg, tingles -> tingle),
sentences, the dependency parse, the Matcher over our own normalised word forms, and Levenshtein
distance for misspellings.

Decision per message:
1. the text is normalised: ALL CAPS lowered, text-speak and missing apostrophes written out (the rules
   file's `normalise` list), so "CANT PEE", "cant pee" and "can't pee" are one phrase;
2. every term phrase is matched on normalised word forms; a match inside a longer match is dropped;
3. each match gets an assertion status from the words around it in its sentence: affirmed, negated
   ("no numbness"; a negation counts only where the parse attaches it to the symptom or its own verb,
   and two negations cancel: "I can't say I don't feel numb"), hypothetical ("what if I had numbness")
   or resolved ("used to");
4. a finding holds, with a status, when all its terms occur in one sentence (the lexicon detector);
   the semantic detector (clinicbot/triage_semantic.py) raises findings from clauses that read like a
   clinician-reviewed example phrase (data/triage/exemplars.yml), catching wording nobody listed;
5. rules combine the present findings; the highest level wins.

Decision per conversation: each message's findings, with their status and turn, accumulate; a later
mention that negates or resolves a finding retracts it; the rules run over what is present now.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import yaml

LEVELS = ("EMERGENCY", "URGENT", "BOOKING", "NONE")  # highest first
LEVEL_RANK = {level: rank for rank, level in enumerate(reversed(LEVELS))}  # NONE=0 ... EMERGENCY=3
# The bot's responses that give a level's advice (domain.yml); the dialogue policy and the console read them.
ADVICE_RESPONSES = {
    "utter_triage_emergency": "EMERGENCY",
    "utter_triage_emergency_reminder": "EMERGENCY",
    "utter_triage_urgent": "URGENT",
    "utter_triage_booking": "BOOKING",
}

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "data" / "triage" / "red_flags.yml"

# The matcher compares each token's canonical form (lemma or spelling-corrected word), which assess_doc
# writes into the token's NORM: a built-in attribute the Matcher reads in C, about ten times faster than a
# custom extension attribute (the triage's own doc, never the one Rasa featurizes).
PRONOUNS = ["my", "her", "his", "their", "your", "the", "our", "its", "this", "both", "a"]
SUBJECT_STARTS = {"i", "my", "she", "her", "he", "his", "they", "their", "it", "now", "we"}
SENTENCE_PUNCT = {".", "!", "?", ";"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "a": 1, "an": 1, "couple": 2}

# Assertion statuses of a matched term, and of a finding.
AFFIRMED, NEGATED, HYPOTHETICAL, RESOLVED = "affirmed", "negated", "hypothetical", "resolved"
# Which non-affirmed status a finding takes when its terms disagree: an explicit "no" is the strongest.
STATUS_STRENGTH = (NEGATED, RESOLVED, HYPOTHETICAL)
# A later turn that says this about a finding retracts it; a hypothetical question does not.
RETRACTING = {NEGATED, RESOLVED}
# A subjectless next sentence that starts with one of these finishes the symptom's sentence ("...lol. went away").
FRAGMENT_GOING_AWAY = {"went", "wore", "passed", "cleared", "disappeared", "stopped", "settled", "resolved"}
# "not numb": a negation on the symptom word itself (not "not able to feel", which is the symptom); and words
# after "not" that make it a comparison ("not as numb as this morning" is better, not gone).
SYMPTOM_ADJECTIVES = {"numb", "tingly", "weak", "dead", "wet"}
COMPARING = {"as", "so", "quite", "that", "too", "nearly"}
# Words that put a sentence in the present, or in the past (RedFlagTriage._past_and_over).
PRESENT_NOW = {"now", "today", "tonight", "still", "currently", "anymore", "again", "lately", "recently"}
PAST_WORDS = {"could", "had", "was", "were", "did"}
# A message that corrects an earlier one (red_flags.yml `clarification` and `clarified_away`).
CLARIFIES_EARLIER = "clarifies_earlier"
NUMBNESS_MENTIONED, NORMAL_FEELING = "numbness_mentioned", "normal_feeling"  # a general denial of numbness
LEXICON, SEMANTIC, LEARNED = "lexicon", "semantic", "learned"  # which detector raised a finding
# "no feeling", "no control": the symptom, not its denial ("no matter how hard I push": neither).
# "I haven't lost/wet/leaked", "it isn't numb": a denial. "I've never had that before" is no denial either.
NOT_DENIED_AFTER_NO = {"feeling", "sensation", "control", "urge", "strength", "warning", "idea", "matter", "way"}
DENYING_VERBS = {"have", "be", "lose", "wet", "leak"}
# The dependency relations through which a negation on the main verb does not reach a symptom in a
# subordinate clause: "I didn't realise I'd wet the bed" reports wetting the bed.
CLAUSAL_DEPS = {"ccomp", "advcl", "xcomp", "csubj", "relcl", "acl", "parataxis"}


@dataclass(frozen=True)
class TermMatch:
    term: str
    start: int
    end: int
    text: str
    sentence: int
    status: str = AFFIRMED


@dataclass(frozen=True)
class Finding:
    """One finding in one message: what, with which status, in which words, found by which detector."""

    name: str
    status: str
    words: str
    detector: str = LEXICON
    turn: int = 0
    score: Optional[float] = None  # the semantic detector's similarity to its closest example phrase
    span: Tuple[int, int] = field(default=(0, 0), compare=False)  # token span in its message

    def as_dict(self) -> Dict[str, Any]:
        data = {"name": self.name, "status": self.status, "words": self.words, "detector": self.detector,
                "turn": self.turn}
        if self.score is not None:
            data["score"] = round(self.score, 3)
        if self.span != (0, 0):
            data["span"] = list(self.span)
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any], turn: Optional[int] = None) -> "Finding":
        return cls(name=data["name"], status=data["status"], words=data.get("words", ""),
                   detector=data.get("detector", LEXICON), turn=data.get("turn", 0) if turn is None else turn,
                   score=data.get("score"), span=tuple(data.get("span") or (0, 0)))


@dataclass(frozen=True)
class TriageResult:
    level: str
    rules: Tuple[str, ...] = ()
    matched: Tuple[str, ...] = ()  # the patient's words behind the decision
    findings: Tuple[str, ...] = ()  # the findings the winning rules used
    suppressed: Tuple[str, ...] = ()  # alarming words that did not count, with why ("numbness: negated")
    # Every finding seen, with status, detector and turn: what the conversation carries forward.
    details: Tuple[Finding, ...] = ()
    safeguarding: Tuple[str, ...] = ()  # disclosures that need a safeguarding reply (abuse, self_harm, ...)

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
            "details": [finding.as_dict() for finding in self.details],
            "safeguarding": list(self.safeguarding),
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


def _separately_said(names: Sequence[str], present: Dict[str, List[Finding]]) -> int:
    """How many of these findings rest on different words: "two signs" means two things the patient said, not
    one clause read two ways, nor a phrase and the clause around it. Each finding, narrowest words first, counts
    when some mention of it does not overlap the words already counted."""
    def width(finding: Finding) -> int:
        return finding.span[1] - finding.span[0] if finding.span != (0, 0) else len(finding.words.split())

    def overlaps(a: Finding, b: Finding) -> bool:
        if a.turn != b.turn:
            return False
        if a.span == (0, 0) or b.span == (0, 0):
            return a.words == b.words
        return a.span[0] < b.span[1] and b.span[0] < a.span[1]

    counted: List[Finding] = []
    for name in sorted(names, key=lambda n: min(width(f) for f in present[n])):
        for finding in sorted(present[name], key=width):
            if not any(overlaps(finding, other) for other in counted):
                counted.append(finding)
                break
    return len(counted)


class TriageRules:
    """The rules part of data/triage/red_flags.yml: which present findings combine into which level.

    Needs no language model, so the dialogue policy (clinicbot/triage_policy.py) can decide a conversation's
    level from the findings its messages carry.
    """

    def __init__(self, config: Dict[str, Any]) -> None:
        self.findings = set(config["findings"])
        self.kept_across_turns = set((config.get("context") or {}).get("kept_across_turns") or [])
        self.clarified_away = set((config.get("context") or {}).get("clarified_away") or [])
        self.denied_in_general = set((config.get("context") or {}).get("denied_in_general") or [])
        self.safety_nets: Dict[str, Dict[str, Any]] = dict(config.get("safety_net") or {})
        for name, net in self.safety_nets.items():
            for finding in [net["suggested_by"], *net.get("when_any", [])]:
                if finding not in self.findings:
                    raise ValueError(f"safety net {name!r} uses unknown finding {finding!r}")
            self.findings.add(net["yes_means"])  # raised by the patient's answer, not by words
        self.safeguarding: Dict[str, str] = dict(config.get("safeguarding") or {})  # finding -> response
        unknown = set(self.safeguarding) - self.findings
        if unknown:
            raise ValueError(f"safeguarding uses unknown findings {sorted(unknown)}")
        # rule -> the response that adds "see your doctor" to the booking advice
        self.see_doctor: Dict[str, str] = dict(config.get("see_doctor") or {})
        self.rules: List[_Rule] = []
        for rule in config["rules"]:
            requires = []
            for entry in rule["requires"]:
                if isinstance(entry, dict):
                    requires.append((int(entry.get("at_least", 1)), list(entry["any"])))
                else:
                    requires.append((1, list(entry)))
            self.rules.append(_Rule(name=rule["name"], level=rule["level"], requires=requires))
        unknown = set(self.see_doctor) - {rule.name for rule in self.rules}
        if unknown:
            raise ValueError(f"see_doctor names unknown rules {sorted(unknown)}")
        for rule in self.rules:
            if rule.level not in LEVELS:
                raise ValueError(f"rule {rule.name!r} has unknown level {rule.level!r}")
            for _, names in rule.requires:
                for name in names:
                    if name not in self.findings:
                        raise ValueError(f"rule {rule.name!r} uses unknown finding {name!r}")

    @classmethod
    def load(cls, rules_path: Path = DEFAULT_RULES_PATH) -> "TriageRules":
        return cls(yaml.safe_load(Path(rules_path).read_text(encoding="utf-8")))

    def combine(self, turns: Sequence[Sequence[Finding]]) -> TriageResult:
        """Accumulate findings over turns and decide. A later negated or resolved mention retracts a finding.

        Within a turn a present mention wins over a negated one (the lexicon and the semantic detector
        may disagree about one clause; a missed emergency costs more than a false alarm).
        """
        state: Dict[str, List[Finding]] = {}  # finding -> its mentions in the turn that last spoke of it
        taken_back: List[Finding] = []  # signs a clarifying message took back without naming them
        for index, findings in enumerate(turns):
            this_turn: Dict[str, List[Finding]] = {}
            for finding in findings:
                this_turn.setdefault(finding.name, []).append(finding)
            def take_back(names, cause: Finding, status: str) -> None:
                """The earlier signs among `names` that this turn does not affirm again go, because of `cause`."""
                for name in sorted(names):
                    earlier = state.get(name)
                    if earlier and earlier[0].status == AFFIRMED and not any(
                            f.status == AFFIRMED for f in this_turn.get(name, [])):
                        retraction = replace(cause, name=name, status=status, turn=index)
                        state[name] = [retraction]
                        taken_back.append(retraction)

            affirmed_here = lambda name: [f for f in this_turn.get(name, []) if f.status == AFFIRMED]  # noqa: E731
            if index > 0 and affirmed_here(CLARIFIES_EARLIER):
                # "Sorry, badly worded: I HAD that years ago."
                take_back(self.clarified_away, affirmed_here(CLARIFIES_EARLIER)[0], RESOLVED)
            if index > 0 and affirmed_here(NORMAL_FEELING) and not affirmed_here(NUMBNESS_MENTIONED):
                # "omg no not numb!! I can feel everything totally normally" (not "not as numb as earlier").
                take_back(self.denied_in_general, affirmed_here(NORMAL_FEELING)[0], NEGATED)
            for name, mentions in this_turn.items():
                affirmed = [f for f in mentions if f.status == AFFIRMED]
                retracting = [f for f in mentions if f.status in RETRACTING]
                if affirmed:
                    state[name] = affirmed
                elif retracting:
                    earlier = state.get(name)
                    if name in self.kept_across_turns and earlier and earlier[0].status == AFFIRMED and index > 0:
                        continue
                    state[name] = retracting[:1]
        present = {name: mentions for name, mentions in state.items() if mentions[0].status == AFFIRMED}
        history = tuple(finding for findings in turns for finding in findings) + tuple(taken_back)
        result = self.decide(present)
        return TriageResult(level=result.level, rules=result.rules, matched=result.matched, findings=result.findings,
                            suppressed=tuple(f"{f.words}: {f.status}" for f in history if f.status != AFFIRMED),
                            details=history, safeguarding=tuple(n for n in self.safeguarding if n in present))

    def decide(self, present: Dict[str, List[Finding]]) -> TriageResult:
        """The rules over present findings (name -> the mentions that show it); the highest level wins."""
        fired: List[Tuple[_Rule, List[Finding], List[str]]] = []
        for rule in self.rules:
            evidence: List[Finding] = []
            used: List[str] = []
            for at_least, names in rule.requires:
                found = [name for name in names if name in present]
                if len(found) < at_least or (at_least > 1 and _separately_said(found, present) < at_least):
                    break
                used.extend(found)
                for name in found:
                    evidence.extend(present[name])
            else:
                fired.append((rule, evidence, used))
        if not fired:
            return TriageResult(level="NONE")
        top = max(LEVEL_RANK[rule.level] for rule, _, _ in fired)
        winners = [(rule, evidence, used) for rule, evidence, used in fired if LEVEL_RANK[rule.level] == top]
        matched: List[str] = []
        used_findings: List[str] = []
        for _, evidence, used in winners:
            for finding in evidence:
                if finding.words not in matched:
                    matched.append(finding.words)
            used_findings.extend(name for name in used if name not in used_findings)
        return TriageResult(level=winners[0][0].level, rules=tuple(rule.name for rule, _, _ in winners),
                            matched=tuple(matched), findings=tuple(used_findings))



class RedFlagTriage:
    """Applies the rules file to text. Build once (loading spaCy takes a second); `assess` is thread-safe."""

    def __init__(self, nlp, config: Dict[str, Any], semantic=None) -> None:
        from spacy.matcher import Matcher

        self.nlp = nlp
        self.semantic = semantic  # clinicbot.triage_semantic.SemanticFindingDetector, or None: lexicon only
        self.normaliser = TextNormaliser(config.get("normalise") or {})
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
            "REPORTING_NOW": context.get("reporting_now", []),
            "STUDYING": context.get("studying", []),
            "ONGOING": context.get("ongoing", []),
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
        self.rule_book = TriageRules(config)
        self.rules = self.rule_book.rules
        self._check_references(config)
        # Built once: the spelling correction looks words up in it for every unknown token of every message.
        self._frozen_vocabulary = frozenset(self.vocabulary)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, rules_path: Path = DEFAULT_RULES_PATH, nlp=None, semantic: bool = True) -> "RedFlagTriage":
        """The rules file, spaCy and (unless semantic=False) the MiniLM example-phrase detector."""
        if nlp is None:
            from clinicbot.offline_models import load_english

            nlp = load_english()
        config = yaml.safe_load(Path(rules_path).read_text(encoding="utf-8"))
        detector = None
        if semantic:
            from clinicbot.triage_semantic import SemanticFindingDetector

            detector = SemanticFindingDetector.load()
        triage = cls(nlp, config, semantic=detector)
        if detector is not None:
            unknown = set(detector.finding_names) - set(triage.findings)
            if unknown:
                raise ValueError(f"data/triage/exemplars.yml names findings the rules do not have: {sorted(unknown)}")
        return triage

    def _check_references(self, config: Dict[str, Any]) -> None:
        for name, alternatives in self.findings.items():
            for alternative in alternatives:
                for term in alternative:
                    if term not in self._term_patterns:
                        raise ValueError(f"finding {name!r} uses unknown term {term!r}")

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
                    spec = [{"NORM": {"IN": sorted(forms)}}]
                else:
                    spec = [{"NORM": {"IN": sorted(forms)}} for forms in token_groups[0]]
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
    def assess(self, text: str, turn: int = 0) -> TriageResult:
        text = (text or "").strip()
        if not text:
            return TriageResult(level="NONE")
        return self.assess_doc(self.nlp(self.normaliser(text)), turn=turn)

    def assess_conversation(self, texts: Sequence[str]) -> List[TriageResult]:
        """The conversation's result after each message (what the bot acts on at that turn)."""
        turns: List[List[Finding]] = []
        results = []
        for turn, text in enumerate(texts):
            turns.append(list(self.assess(text, turn=turn).details))
            results.append(self.combine(turns))
        return results

    def combine(self, turns: Sequence[Sequence[Finding]]) -> TriageResult:
        return self.rule_book.combine(turns)

    def decide(self, present: Dict[str, List[Finding]]) -> TriageResult:
        return self.rule_book.decide(present)

    def assess_doc(self, doc, turn: int = 0) -> TriageResult:
        for token in doc:
            token.norm_ = self._canon(token)
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
                status=self._status(doc, start, end, sentence_of, cues, informational),
            )
            for term, start, end in kept
        ]
        details, denied = self._findings(terms, turn)
        details = self._clarification(details, cues)
        if self.semantic is not None:
            for finding in self.semantic.detect(doc, self._semantic_status(doc, sentence_of, cues, informational), turn):
                # Where the word list read the same words as negated, resolved or hypothetical, it wins: it
                # read the words; the sentence vector barely sees "no" ("no numbness down there").
                if finding.status == AFFIRMED and any(
                    name == finding.name and start < finding.span[1] and finding.span[0] < end
                    for name, start, end in denied
                ):
                    continue
                details.append(finding)
        details = self._past_and_over(doc, details, cues, sentence_of)
        result = self.combine([details])
        suppressed = tuple(sorted({f"{m.text}: {m.status}" for m in terms if m.status != AFFIRMED}))
        return TriageResult(level=result.level, rules=result.rules, matched=result.matched, findings=result.findings,
                            suppressed=suppressed, details=tuple(details), safeguarding=result.safeguarding)

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
        """Numbers that decide whether a match counts.

        Durations of under three days are not 'more than a few days'; 'eight months ago' is no duration;
        an age counts only from 50 ("I'm 58", "52 m"), not "I'm 7 weeks pregnant".
        """
        span = doc[start:end]
        if term == "back":
            # "the feeling came back", "back to normal", "back then": not the body part.
            before = doc[start - 1].lemma_.lower() if start > 0 else ""
            after = " ".join(t.lower_ for t in doc[end:end + 2])
            return before not in {"come", "go", "get", "bring", "give", "call", "write", "text", "ring"} and not (
                after.startswith("then") or after.startswith("to normal"))
        if term == "age":
            values = [_number_value(token.lower_) for token in span]
            following = doc[end].lower_ if end < len(doc) else ""
            return any(v is not None and 50 <= v <= 110 for v in values) and following not in {
                "weeks", "week", "days", "day", "months", "kg", "kilos", "lbs", "pounds", "%", "minutes", "hours"}
        if term != "persistent":
            return True
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
            "INFORMATIONAL": [], "REPORTING_NOW": [], "STUDYING": [], "CONDITIONAL": [], "ONGOING": [],
        }
        for match_id, start, end in self.cue_matcher(doc):
            kind = self.nlp.vocab.strings[match_id]
            # A cue inside a symptom phrase belongs to the symptom ("can't pee", "no feeling", "passed out").
            if kind not in {"BREAK", "ONGOING"} and all(i in covered for i in range(start, end)):
                continue
            cues[kind].append((start, end))
        for token in doc:
            if token.text in SENTENCE_PUNCT:
                cues["BREAK"].append((token.i, token.i + 1))
            # ", my groin is numb" starts a new clause; ", tingling or weakness" does not.
            if token.text == "," and token.i + 1 < len(doc) and doc[token.i + 1].lower_ in SUBJECT_STARTS:
                cues["BREAK"].append((token.i, token.i + 1))
        cues["CONDITIONAL"] = _conditional_clauses(doc, cues["HYPOTHETICAL"])
        # An ongoing word inside a cue that says it is over ("been fine since", "totally fine") does not count.
        resolved = cues["RESOLVED_BEFORE"] + cues["RESOLVED_AFTER"]
        cues["ONGOING"] = [(s, e) for s, e in cues["ONGOING"] if not any(rs < e and s < re for rs, re in resolved)]
        return cues

    def _informational_sentences(self, doc, sentence_of: List[int], cues) -> Set[int]:
        """Questions that ask about a symptom in general, with no I/my/we: 'Can back problems cause numbness?'

        None, when the message says it is happening to them ("in general, what does it mean if you can't
        feel the paper when you wipe? asking because it's happening to me right now").
        """
        informational: Set[int] = set()
        if cues.get("REPORTING_NOW"):
            return informational
        if cues.get("STUDYING"):
            # "I am a physio student. For my exam: which back symptoms are an emergency? Loss of feeling in the
            # saddle area?": every sentence that says nothing of I/my/me is part of the question.
            for sentence in set(sentence_of):
                if not any(t.lower_ in self.reporting_words for t in doc if sentence_of[t.i] == sentence):
                    informational.add(sentence)
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

    def _status(self, doc, start: int, end: int, sentence_of: List[int], cues, informational: Set[int]) -> str:
        sentence = sentence_of[start]
        if sentence in informational:
            return HYPOTHETICAL
        ongoing = any(sentence_of[s] == sentence for s, _ in cues["ONGOING"])
        clause_start = max(
            [e for s, e in cues["BREAK"] if e <= start and sentence_of[s] == sentence] or [0]
        )

        def before(kind: str, window: int) -> bool:
            return any(
                e <= start and s >= clause_start and start - e <= window and sentence_of[s] == sentence
                for s, e in cues[kind]
            )

        if before("RESOLVED_BEFORE", self.resolved_window) and not ongoing:
            return RESOLVED
        if not ongoing and any(
            s >= end and s - end <= self.resolved_window and (
                sentence_of[s] == sentence
                # "...pins and needles after the game lol. went away when i stood up": a fragment that opens with
                # the cue finishes the sentence before it
                or (sentence_of[s] == sentence + 1 and sentence_of[s - 1] == sentence
                    and doc[s].lower_ in FRAGMENT_GOING_AWAY))
            for s, e in cues["RESOLVED_AFTER"]
        ):
            return RESOLVED
        negations = [
            (s, e) for s, e in cues["NEGATION"]
            if e <= start and s >= clause_start and start - e <= self.negation_window and sentence_of[s] == sentence
            and not (e < len(doc) and doc[e].lower_ in COMPARING)  # "not as numb as earlier": better, not gone
        ]
        if negations and any(_negation_reaches(doc, s, e, start, end) for s, e in negations):
            return NEGATED
        if before("HYPOTHETICAL", self.hypothetical_window) and not cues["REPORTING_NOW"]:
            return HYPOTHETICAL
        if any(s <= start and end <= e for s, e in cues["CONDITIONAL"]) and not cues["REPORTING_NOW"]:
            return HYPOTHETICAL  # the whole "if my mum ever got ... and couldn't feel ..." clause, however long
        return AFFIRMED

    def _findings(self, terms: Sequence[TermMatch], turn: int) -> Tuple[List[Finding], List[Tuple[str, int, int]]]:
        """Each finding whose terms all occur in one sentence, with the status those mentions give it.

        Also returns the token spans of the findings that are there but not affirmed (name, start, end).
        """
        by_sentence: Dict[int, Dict[str, List[TermMatch]]] = {}
        for match in terms:
            status = AFFIRMED if match.status == RESOLVED and match.term in self.past_counts else match.status
            by_sentence.setdefault(match.sentence, {}).setdefault(match.term, []).append(
                TermMatch(match.term, match.start, match.end, match.text, match.sentence, status))
        found: List[Finding] = []
        denied: List[Tuple[str, int, int]] = []
        for name, alternatives in self.findings.items():
            for sentence_terms in by_sentence.values():
                for alternative in alternatives:
                    if not all(term in sentence_terms for term in alternative):
                        continue
                    mentions = [m for term in alternative for m in sentence_terms[term]]
                    affirmed = [m for m in mentions if m.status == AFFIRMED]
                    if all(any(m.status == AFFIRMED for m in sentence_terms[term]) for term in alternative):
                        status, shown = AFFIRMED, affirmed
                    else:
                        status = next(st for st in STATUS_STRENGTH if any(m.status == st for m in mentions))
                        shown = mentions
                    words = " ... ".join(m.text for m in sorted(shown, key=lambda m: m.start))
                    found.append(Finding(name=name, status=status, words=words, detector=LEXICON, turn=turn,
                                         span=(min(m.start for m in shown), max(m.end for m in shown))))
                    if status != AFFIRMED:
                        denied.append((name, min(m.start for m in mentions), max(m.end for m in mentions)))
        return found, denied

    def _past_and_over(self, doc, details: List[Finding], cues, sentence_of: List[int]) -> List[Finding]:
        """A story about the past that says it is over ("In 2015 I couldn't feel my bum and lost control of my
        bladder. Had surgery, all fixed now."): the signs told in the past tense are resolved, although the
        cue is sentences away from them. Needs both a time in the past (a year, "years ago", "as a child") and
        a cue that it is over ("fixed now", "back to normal"); a sentence that says now, today or still keeps its
        sign ("I had surgery years ago, fine since, but today I can't feel my bum")."""
        over = bool(cues["RESOLVED_AFTER"])
        anchored = bool(cues["RESOLVED_BEFORE"]) or any(
            token.is_digit and len(token.text) == 4 and 1950 <= int(token.text) <= 2035 for token in doc)
        if not (over and anchored):
            return details
        signs = self.rule_book.clarified_away
        result = []
        for finding in details:
            if finding.name in signs and finding.status == AFFIRMED and finding.span != (0, 0):
                sentence = [t for t in doc if sentence_of[t.i] == sentence_of[finding.span[0]]]
                # "Since yesterday both legs feel heavy": "since" runs up to now; it is not the story. (Not every
                # present-tense verb: "I wet the bed till I was ten" reads "wet" as present.)
                now = any(t.lower_ in PRESENT_NOW or t.lower_ == "since" for t in sentence)
                past = any(t.tag_ == "VBD" or t.lower_ in PAST_WORDS for t in sentence)
                if past and not now:
                    finding = replace(finding, status=RESOLVED)
            result.append(finding)
        return result

    @staticmethod
    def _clarification(details: List[Finding], cues) -> List[Finding]:
        """A correction counts only with a cue that the thing is past, situational or not theirs ("sorry, I
        meant years ago", "to be clear, it went away"), never on its own: "I meant both legs" takes nothing back.
        However it was read (negated after "no no sorry"), a correction with such a cue is affirmed."""
        corrections = [f for f in details if f.name == CLARIFIES_EARLIER]
        if not corrections:
            return details
        rest = [f for f in details if f.name != CLARIFIES_EARLIER]
        if not (cues["RESOLVED_BEFORE"] or cues["RESOLVED_AFTER"]):
            return rest
        return rest + [replace(corrections[0], status=AFFIRMED)]

    def _semantic_status(self, doc, sentence_of: List[int], cues, informational: Set[int]):
        """The status of a clause the semantic detector matched, from the lexicon's cues and the parse.

        Many symptoms are themselves negative ("didn't feel it happen", "can't get it started", "no feeling",
        "leaked without noticing", "never happened before"), so a negation only counts when it denies having
        the thing: "no" before an ordinary noun ("no numbness", "no trouble peeing") or a "not" on have, be,
        lose, wet or leak ("I haven't lost control", "it's not numb").
        """
        def status(start: int, end: int) -> str:
            sentence = sentence_of[start]
            if sentence in informational:
                return HYPOTHETICAL
            inside = lambda kind: any(start <= s and e <= end for s, e in cues[kind])  # noqa: E731
            if (inside("RESOLVED_BEFORE") or inside("RESOLVED_AFTER")) and not inside("ONGOING"):
                return RESOLVED
            if inside("HYPOTHETICAL") and not cues["REPORTING_NOW"]:
                return HYPOTHETICAL
            if any(s <= start and end <= e for s, e in cues["CONDITIONAL"]) and not cues["REPORTING_NOW"]:
                return HYPOTHETICAL
            if _normal_feeling(doc[start:end]):
                return NEGATED  # "I can feel everything normally": a sentence vector reads it as the opposite
            for token in doc[start:end]:
                if token.i + 1 < len(doc) and doc[token.i + 1].lower_ in COMPARING and token.lower_ in {"not", "n't"}:
                    continue  # "it's not as numb as this morning": better, not gone
                if token.lower_ == "no" and token.head.lemma_.lower() not in NOT_DENIED_AFTER_NO:
                    return NEGATED
                if token.dep_ == "neg" and token.head.lemma_.lower() in SYMPTOM_ADJECTIVES:
                    return NEGATED  # "not numb at all"
                if token.lower_ == "never" and any(t.lower_ == "any" for t in doc[token.i + 1:min(end, token.i + 4)]):
                    return NEGATED  # "I've never had any numbness" (but "never had that before" is new)
                if (token.dep_ == "neg" and token.lower_ != "never" and token.head.lemma_.lower() in DENYING_VERBS
                        and not _is_ability(token.head)):
                    return NEGATED
            return AFFIRMED

        return status


class TextNormaliser:
    """Writing style out of the way before matching: phones' curly apostrophes, ALL CAPS, text-speak.

    spaCy already splits "cant"/"dont"/"im" like "can't"/"don't"/"I'm", but only in lower case, and its
    lemmas and parse of shouted text are poor, so mostly-capital messages are lowered. Text-speak and
    shorthand ("u", "rn", "2day", "w/o", "wks") come from the rules file's `normalise` list.
    """

    def __init__(self, words: Dict[str, str]) -> None:
        self.words = {str(k).lower(): str(v) for k, v in words.items()}
        if self.words:
            alternatives = "|".join(re.escape(k) for k in sorted(self.words, key=len, reverse=True))
            self._pattern = re.compile(rf"(?<![\w/])({alternatives})(?![\w/])", re.IGNORECASE)
        else:
            self._pattern = None

    def __call__(self, text: str) -> str:
        text = text.replace("\u2019", "'").replace("\u2018", "'")
        letters = [c for c in text if c.isalpha()]
        if len(letters) >= 6 and sum(c.isupper() for c in letters) / len(letters) > 0.6:
            text = text.lower()
        text = _SHORTHAND_DURATION.sub(lambda m: f"{m.group(1)} {_SHORTHAND_UNITS[m.group(2)]}", text)
        text = _FEVER_READING.sub(lambda m: f"a fever of {m.group(0)}", text)
        text = _DOUBLE_NEGATION.sub("I do", text)
        text = _HEDGED_NEGATION.sub(lambda m: f"I nearly {m.group(1)}", text)
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self.words[m.group(1).lower()], text)
        return text


# Clinicians' and some patients' shorthand for durations: 2/52 = two weeks, 3/12 = three months, 5/7 = five days.
_SHORTHAND_DURATION = re.compile(r"\b(\d{1,2})/(52|12|7)\b")
_SHORTHAND_UNITS = {"52": "weeks", "12": "months", "7": "days"}
# A temperature reading is a fever whatever words go with it ("tonight I'm 38.1", "102 F"): a decimal
# 37.8-41.9 (Celsius), a whole 38-41 with a degree sign or "C", 100.4-105.9 (Fahrenheit), unless a unit says
# it is a weight, a duration or a percentage.
_FEVER_READING = re.compile(
    r"(?<![\d.,/])(?:37\.[89]|3[89]\.\d|4[01]\.\d|(?:3[89]|4[01])\s*(?:°\s*c?|degrees?(?:\s*c)?|c\b)"
    r"|10[0-5]\.\d|10[0-5]\s*(?:°\s*f?|degrees?(?:\s*f)?|f\b))(?!\d|[.,]\d)"
    r"(?!\s*(?:kg|kilo|lb|pound|stone|st\b|week|wk|day|month|year|yr|%|percent|cm|mm|min|hour|hr))",
    re.IGNORECASE,
)
# Double negation said as an idiom means yes: "I can't say I don't feel it", "it's not that I don't notice it".
_DOUBLE_NEGATION = re.compile(
    r"\b(?:i\s+)?(?:can'?t|cannot|couldn'?t)\s+say\s+(?:that\s+)?i\s+(?:don'?t|do\s+not)\b"
    r"|\b(?:it'?s|it\s+is)\s+not\s+(?:like|that)\s+i\s+(?:don'?t|do\s+not)\b"
    r"|\bit\s+isn'?t\s+(?:like|that)\s+i\s+(?:don'?t|do\s+not)\b",
    re.IGNORECASE,
)

# "I wouldn't say I can't feel anything ... but it's not normal": a hedge on a symptom, which stays a symptom.
_HEDGED_NEGATION = re.compile(
    r"\b(?:i\s+)?(?:wouldn'?t|would\s+not|couldn'?t)\s+say\s+(?:that\s+)?i\s+(can'?t|cannot|have\s+no|don'?t\s+have\s+any)\b",
    re.IGNORECASE,
)


_NORMAL_FEELING = {"everything", "normally", "normal", "fine", "ok", "okay", "all", "perfectly"}


def _normal_feeling(span) -> bool:
    """'I can feel everything (normally)', 'could feel it all fine': feeling that is there, not lost."""
    for token in span:
        if token.lemma_.lower() == "feel" and any(c.lower_ in {"can", "could"} for c in token.children) \
                and not any(c.dep_ == "neg" for c in token.children):
            following = {t.lower_ for t in token.doc[token.i + 1:min(token.i + 4, span.end)]}
            if following & _NORMAL_FEELING:
                return True
    return False


def _is_ability(verb) -> bool:
    """'haven't been able to pee': a negated ability is the symptom, not a denial."""
    following = verb.doc[verb.i + 1] if verb.i + 1 < len(verb.doc) else None
    return any(child.lower_ in {"able", "unable"} for child in verb.children) or (
        following is not None and following.lower_ in {"able", "unable"})


def _negation_reaches(doc, cue_start: int, cue_end: int, start: int, end: int) -> bool:
    """Does the negation cue doc[cue_start:cue_end] negate the symptom doc[start:end]? Read off the parse.

    It does when it attaches to the symptom, to a word the symptom is coordinated with ("no numbness or
    tingling"), or to the verb that governs the symptom in the same clause ("I don't have numbness").
    It does not reach into a subordinate clause ("I didn't realise I'd wet myself"), and a second
    negation above it cancels it ("I can't say I don't feel numb").
    """
    cue = doc[cue_end - 1] if doc[cue_start].dep_ != "neg" else doc[cue_start]
    if cue.lower_ in {"without", "nor", "neither"} or cue_end - cue_start > 1:
        return True  # prepositions and multi-word cues ("free of", "negative for") are reliable as written
    root = doc[start]
    for token in doc[start:end]:
        if not (start <= token.head.i < end):
            root = token
            break
    # Climb from the symptom through coordination and nominal attachments to its governing word.
    governors = {root.i}
    node = root
    while node.dep_ in {"conj", "appos", "compound", "amod", "pobj", "prep", "dobj", "nsubj", "attr", "acomp",
                        "npadvmod", "advmod", "det"} and node.head.i != node.i:
        if node.dep_ in CLAUSAL_DEPS:
            break
        node = node.head
        governors.add(node.i)
        if node.pos_ in {"VERB", "AUX"}:
            break
    if cue.head.i not in governors and cue.i not in governors and not any(t.i in governors for t in cue.children):
        return False
    # Double negation: "I can't say I don't feel it", "it isn't like I don't have pain".
    above = cue.head
    while above.dep_ in CLAUSAL_DEPS and above.head.i != above.i:
        above = above.head
        if any(child.dep_ == "neg" for child in above.children):
            return False
    return True


def _conditional_clauses(doc, hypothetical_cues: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Token spans of the conditional clauses a hypothetical cue opens ("if my mum ever got back pain and couldn't
    feel when she wiped, what should we do?"), from the dependency parse: the "if" is the mark of an adverbial
    clause, and the clause is that verb's subtree. A word window stops short of a long clause. An "if" that means
    "whether" ("I don't know if I've wet myself") heads a complement, not an adverbial clause, and is left alone."""
    spans = []
    for cue_start, cue_end in hypothetical_cues:
        for token in doc[cue_start:cue_end]:
            if token.lower_ == "if" and token.dep_ == "mark" and token.head.dep_ == "advcl":
                verb = token.head
                spans.append((verb.left_edge.i, verb.right_edge.i + 1))
    return spans


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


def explain(results: Sequence[TriageResult], texts: Sequence[str]) -> str:
    """For a clinician: per turn, the level, the rules that fired, and every finding with turn, status and detector."""
    lines = []
    for turn, (result, text) in enumerate(zip(results, texts), start=1):
        lines.append(f"turn {turn}: {result.level:9} {', '.join(result.rules) or '-'}   <- {text.strip()}")
        for finding in result.details:
            if finding.turn != turn - 1:
                continue
            used = "*" if finding.name in result.findings and finding.status == AFFIRMED else " "
            score = f" {finding.score:.2f}" if finding.score is not None else ""
            lines.append(f"   {used} {finding.name:38} {finding.status:12} {finding.detector}{score:6}  \"{finding.words}\"")
    lines.append("(* = a finding the deciding rules used; findings carry over from earlier turns until retracted)")
    return "\n".join(lines)


def _main() -> None:  # pragma: no cover - a small CLI for clinicians trying out wording
    """python -m clinicbot.triage "first message" "second message" ...  (one conversation, one turn per argument)
    python -m clinicbot.triage < messages.txt                           (each line its own conversation)"""
    import sys

    triage = default_triage()
    if len(sys.argv) > 1:
        print(explain(triage.assess_conversation(sys.argv[1:]), sys.argv[1:]))
        return
    for line in sys.stdin:
        if line.strip():
            print(explain([triage.assess(line)], [line]))


if __name__ == "__main__":
    _main()
