"""`make eval`: NLU quality on the held-out set and triage precision/recall per level.

    python -m clinicbot.evaluation nlu results/nlu   # summarise `rasa test nlu` reports
    python -m clinicbot.evaluation triage                  # triage on the blind sets and the older sets
    python -m clinicbot.evaluation triage --set set1-dev   # one blind set (set1-dev ... set4-dev, set4-test)
    python -m clinicbot.evaluation thresholds MODEL  # tune the unsure-answer fallback threshold
    python -m clinicbot.evaluation split AUTHOR.yml ... --out tests/triage/blindN --seed N  # a new blind set's halves
"""
from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import yaml

from clinicbot.settings import PROJECT_ROOT
from clinicbot.triage import LEVEL_RANK, LEVELS

TRIAGE_DIR = PROJECT_ROOT / "tests" / "triage"
# Written in session 1; the rules were tuned on both, so they measure memory, not generalisation.
TRIAGE_SETS = {
    "labelled (tuned on)": TRIAGE_DIR / "labelled_messages.yml",
    "holdout (tuned on)": TRIAGE_DIR / "holdout_messages.yml",
}
# Blind sets. Set 1 (tests/triage/blind/): its dev half was studied; its test half was scored once (commit d5eed27)
# and then studied too. Set 2 (tests/triage/blind2/) was scored once (f6b2c63) and studied in session 4. Both are
# development data now. Set 3 (tests/triage/blind3/) was studied in session 4 and its test half scored once at
# its end: all of it is development data now. Set 4 (tests/triage/blind4/, session 5): its dev half may be
# studied. Set 5 (tests/triage/blind5/, session 6): its dev half was studied; its test half was scored at the end of
# session 6 and never read (docs/triage-evaluation.md). All five are spent. Set 6 (tests/triage/blind6/, session 7):
# its dev half may be studied; its test half is scored at the end of the session's change, never read.
BLIND_SETS = {
    "set1-dev": TRIAGE_DIR / "blind" / "dev",
    "set1-test": TRIAGE_DIR / "blind" / "test",
    "set2-test": TRIAGE_DIR / "blind2" / "test",
    "set3-dev": TRIAGE_DIR / "blind3" / "dev",
    "set3-test": TRIAGE_DIR / "blind3" / "test",
    "set4-dev": TRIAGE_DIR / "blind4" / "dev",
    "set4-test": TRIAGE_DIR / "blind4" / "test",
    "set5-dev": TRIAGE_DIR / "blind5" / "dev",
    "set5-test": TRIAGE_DIR / "blind5" / "test",
    "set6-dev": TRIAGE_DIR / "blind6" / "dev",
    "set6-test": TRIAGE_DIR / "blind6" / "test",
}
BLIND_HALVES = tuple(BLIND_SETS)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> Tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at 0% and 100%, unlike the normal approximation)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(successes: int, total: int) -> str:
    low, high = wilson_interval(successes, total)
    share = successes / total if total else 0.0
    return f"{share:.1%} ({successes}/{total}, 95% CI {low:.0%}-{high:.0%})"


def blind_message_report(items: List[Dict], predict) -> List[str]:
    """The issue's targets on single messages: care at or above the needed level, and false alarms on NONE."""
    predicted = [predict(item["text"]) for item in items]
    pairs = list(zip((item["level"] for item in items), predicted))
    lines = [f"{len(items)} messages"]
    for level, what in (("EMERGENCY", "EMERGENCY recall"), ("URGENT", "URGENT-or-higher on URGENT"),
                        ("BOOKING", "BOOKING-or-higher on BOOKING")):
        group = [p for e, p in pairs if e == level]
        enough = sum(1 for p in group if LEVEL_RANK[p] >= LEVEL_RANK[level])
        lines.append(f"- {what}: {_rate(enough, len(group))}")
    calm = [p for e, p in pairs if e == "NONE"]
    alarms = sum(1 for p in calm if p in ("URGENT", "EMERGENCY"))
    lines.append(f"- urgent/emergency false alarms on NONE: {_rate(alarms, len(calm))}")
    lines.append(f"- any red flag on NONE: {_rate(sum(1 for p in calm if p != 'NONE'), len(calm))}")
    lines.append(f"- exact level: {_rate(sum(e == p for e, p in pairs), len(pairs))}")
    return lines + level_table(pairs)


def level_table(pairs: List[Tuple[str, str]]) -> List[str]:
    """Precision and recall per level as a markdown table, then the confusions."""
    scores = per_level_scores(pairs)
    lines = ["| level | precision | recall | support |", "|---|---|---|---|"]
    for level in LEVELS:
        s = scores[level]
        lines.append(f"| {level} | {s['precision']:.1%} | {s['recall']:.1%} | {int(s['support'])} |")
    errors = Counter((e, p) for e, p in pairs if e != p)
    if errors:
        lines.append("confusions (expected -> predicted): " + ", ".join(f"{e}->{p} x{n}" for (e, p), n in errors.most_common()))
    return lines


def blind_conversation_report(conversations: List[Dict], predict_turns) -> List[str]:
    """Per-turn levels; whether the emergency advice comes at the turn where the emergency becomes clear."""
    turns_total = turns_right = turns_safe = 0
    emergency_convs = emergency_on_time = whole_right = 0
    for conversation in conversations:
        expected = [turn["level"] for turn in conversation["turns"]]
        predicted = predict_turns([turn["text"] for turn in conversation["turns"]])
        turns_total += len(expected)
        turns_right += sum(e == p for e, p in zip(expected, predicted))
        turns_safe += sum(LEVEL_RANK[p] >= LEVEL_RANK[e] for e, p in zip(expected, predicted))
        whole_right += all(e == p for e, p in zip(expected, predicted))
        if "EMERGENCY" in expected:
            emergency_convs += 1
            first = expected.index("EMERGENCY")
            emergency_on_time += predicted[first] == "EMERGENCY"
    return [
        f"{len(conversations)} conversations, {turns_total} turns",
        f"- emergency advice at the turn it becomes clear: {_rate(emergency_on_time, emergency_convs)}",
        f"- turns at the exact level: {_rate(turns_right, turns_total)}",
        f"- turns at or above the needed level: {_rate(turns_safe, turns_total)}",
        f"- conversations right at every turn: {_rate(whole_right, len(conversations))}",
    ]


def blind_report(halves=BLIND_HALVES, semantic: bool = True) -> str:
    from clinicbot.triage import RedFlagTriage

    triage = RedFlagTriage.load(semantic=semantic)
    lines: List[str] = []
    for half in halves:
        prefix = BLIND_SETS[half]
        messages = yaml.safe_load(prefix.with_name(f"{prefix.name}_messages.yml").read_text(encoding="utf-8"))
        conversations = yaml.safe_load(prefix.with_name(f"{prefix.name}_conversations.yml").read_text(encoding="utf-8"))
        lines.append(f"\nBlind {half}: single messages")
        lines += blind_message_report(messages, lambda text: triage.assess(text).level)
        lines.append(f"\nBlind {half}: conversations")
        lines += blind_conversation_report(conversations, lambda texts: conversation_levels(triage, texts))
    return "\n".join(lines)


def conversation_levels(triage, texts: List[str]) -> List[str]:
    """The level the bot acts on at each turn: the conversation's, where the triage has one."""
    if hasattr(triage, "assess_conversation"):
        return [result.level for result in triage.assess_conversation(texts)]
    return [triage.assess(text).level for text in texts]  # per-message triage (before session 3)


def per_level_scores(pairs: Iterable[Tuple[str, str]]) -> Dict[str, Dict[str, float]]:
    """(expected, predicted) pairs -> precision, recall and support per level."""
    pairs = list(pairs)
    scores: Dict[str, Dict[str, float]] = {}
    for level in LEVELS:
        true_positive = sum(1 for e, p in pairs if e == level and p == level)
        predicted = sum(1 for _, p in pairs if p == level)
        actual = sum(1 for e, _ in pairs if e == level)
        scores[level] = {
            "precision": true_positive / predicted if predicted else 1.0,
            "recall": true_positive / actual if actual else 1.0,
            "support": actual,
        }
    return scores


def triage_report() -> str:
    from clinicbot.triage import default_triage

    triage = default_triage()
    lines: List[str] = []
    for name, path in TRIAGE_SETS.items():
        items = yaml.safe_load(path.read_text(encoding="utf-8"))
        pairs = [(item["level"], triage.assess(item["text"]).level) for item in items]
        accuracy = sum(e == p for e, p in pairs) / len(pairs)
        lines.append(f"\nTriage, {name}: {len(items)} messages, accuracy {accuracy:.1%}")
        lines += level_table(pairs)
    return "\n".join(lines)


def nlu_report(results_dir: Path) -> str:
    lines: List[str] = []
    for title, filename in (("Intent", "intent_report.json"), ("Response selection (faq topics)", "response_selection_report.json")):
        path = results_dir / filename
        if not path.exists():
            lines.append(f"{title}: no report at {path}")
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        weighted = report.get("weighted avg", {})
        lines.append(
            f"{title}: accuracy {report.get('accuracy', 0):.1%}, weighted F1 {weighted.get('f1-score', 0):.1%}, "
            f"macro F1 {report.get('macro avg', {}).get('f1-score', 0):.1%}"
        )
        confusions: Counter = Counter()
        for label, entry in report.items():
            if isinstance(entry, dict) and "confused_with" in entry:
                for other, count in entry["confused_with"].items():
                    confusions[(label, other)] += count
        worst = confusions.most_common(8)
        if worst:
            lines.append("  worst confusions: " + "; ".join(f"{a} -> {b} x{n}" for (a, b), n in worst))
    return "\n".join(lines)


def threshold_report(model: Path) -> str:
    """How the UnsureAnswerFallback threshold trades answered questions against answered off-topic messages.

    FAQ questions from the held-out set, off-topic messages from the held-out set and tests/e2e.
    """
    import asyncio

    from rasa.core.agent import Agent
    from rasa.shared.nlu.training_data.loading import load_data

    holdout = load_data(str(PROJECT_ROOT / "tests" / "nlu" / "holdout.yml"))
    faq = [(m.get("text"), m.get_full_intent()) for m in holdout.intent_examples if m.get("intent") == "faq"]
    off_topic = [m.get("text") for m in holdout.intent_examples if m.get("intent") == "out_of_scope"]
    off_topic += yaml.safe_load((PROJECT_ROOT / "tests" / "e2e" / "out_of_scope_questions.yml").read_text(encoding="utf-8"))

    async def confidences():
        agent = Agent.load(str(model))
        faq_scores, off_scores = [], []
        for text, expected in faq:
            parse = await agent.parse_message(text)
            response = parse.get("response_selector", {}).get("faq", {}).get("response", {})
            faq_scores.append((response.get("confidence", 0.0), response.get("intent_response_key") == expected))
        for text in off_topic:
            parse = await agent.parse_message(text)
            classified = (parse.get("triage") or {}).get("classified_intent") or parse["intent"]
            response = parse.get("response_selector", {}).get("faq", {}).get("response", {})
            # Would the classifier have answered it? (faq, or faq held back by the unsure-answer gate)
            as_faq = classified.get("name") == "faq" or "unsure_answer" in parse
            off_scores.append((response.get("confidence", 0.0), as_faq))
        return faq_scores, off_scores

    faq_scores, off_scores = asyncio.run(confidences())
    lines = [f"{len(faq_scores)} held-out FAQ questions, {len(off_scores)} off-topic messages",
             "| threshold | right answer given | wrong answer given | FAQ question withheld | off-topic answered |",
             "|---|---|---|---|---|"]
    for threshold in (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
        right = sum(1 for c, ok in faq_scores if ok and c >= threshold) / len(faq_scores)
        wrong = sum(1 for c, ok in faq_scores if not ok and c >= threshold) / len(faq_scores)
        withheld = sum(1 for c, _ in faq_scores if c < threshold) / len(faq_scores)
        answered = sum(1 for c, as_faq in off_scores if as_faq and c >= threshold) / len(off_scores)
        lines.append(f"| {threshold:.2f} | {right:.1%} | {wrong:.1%} | {withheld:.1%} | {answered:.1%} |")
    return "\n".join(lines)


def safety_question_report(halves=BLIND_HALVES) -> str:
    """Single messages on which the bot would ask its safety-net question (the first-turn question
    ConversationTriagePolicy asks): how many of the emergencies the triage misses get it, and how often it is asked
    of messages that need no more than a booking or nothing."""
    from clinicbot.triage import AFFIRMED, RedFlagTriage

    triage = RedFlagTriage.load(semantic=True)
    nets = list(triage.rule_book.safety_nets.values())

    def asks(result) -> bool:
        present = {f.name for f in result.details if f.status == AFFIRMED}
        return result.level != "EMERGENCY" and any(
            net["suggested_by"] in present and set(net.get("when_any", [])) & present for net in nets)

    counts = {"missed emergencies": [0, 0], "BOOKING": [0, 0], "NONE": [0, 0]}
    for half in halves:
        prefix = BLIND_SETS[half]
        for item in yaml.safe_load(prefix.with_name(f"{prefix.name}_messages.yml").read_text(encoding="utf-8")):
            result = triage.assess(item["text"])
            if item["level"] == "EMERGENCY" and result.level != "EMERGENCY":
                key = "missed emergencies"
            elif item["level"] in ("BOOKING", "NONE"):
                key = item["level"]
            else:
                continue
            counts[key][0] += asks(result)
            counts[key][1] += 1
    return "\n".join([f"Safety-net question on single messages ({', '.join(halves)}):"] + [
        f"- asked on {what}: {asked}/{total}" for what, (asked, total) in counts.items()])


def split_blind_set(files: List[Path], out: Path, seed: int) -> str:
    """A new blind set's helper files -> a development half and a test half, 50/50 within each author and level
    (conversations by their highest level), exact duplicates within an author dropped. Seeded per author and level:
    the same seed gives an author the same halves whichever other files are split with it (so a set whose authors
    finish at different times is split again with all of them, and the earlier halves stay as they were)."""
    import random

    halves: Dict[str, Dict[str, List[Dict]]] = {"dev": {"messages": [], "conversations": []},
                                                 "test": {"messages": [], "conversations": []}}
    for path in files:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        groups: Dict[Tuple[str, str, str], List[Dict]] = {}
        seen = set()
        for item in items:
            kind = "conversations" if "turns" in item else "messages"
            key = tuple(t["text"] for t in item["turns"]) if kind == "conversations" else item["text"]
            if key in seen:
                continue
            seen.add(key)
            levels = [t["level"] for t in item["turns"]] if kind == "conversations" else [item["level"]]
            level = max(levels, key=LEVEL_RANK.get)
            groups.setdefault((kind, str(item.get("author", path.stem)), level), []).append(item)
        for (kind, author, level), group in sorted(groups.items()):
            # one generator per group: an author's halves do not depend on which other files are split with it
            rng = random.Random(f"{seed}:{kind}:{author}:{level}")
            rng.shuffle(group)
            middle = (len(group) + rng.randint(0, 1)) // 2  # odd groups: a coin decides which half gets the extra
            halves["dev"][kind] += group[:middle]
            halves["test"][kind] += group[middle:]
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for half, kinds in halves.items():
        for kind, items in kinds.items():
            (out / f"{half}_{kind}.yml").write_text(
                yaml.safe_dump(items, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
            lines.append(f"{half}_{kind}.yml: {len(items)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    nlu = sub.add_parser("nlu")
    nlu.add_argument("results", type=Path)
    triage = sub.add_parser("triage")
    triage.add_argument("--set", dest="half", choices=BLIND_HALVES, action="append", help="blind set to score (default: all)")
    triage.add_argument("--no-semantic", action="store_true", help="word list only: what the semantic detector adds")
    questions = sub.add_parser("safety-question", help="how often the safety-net question catches a missed emergency")
    questions.add_argument("--set", dest="half", choices=BLIND_HALVES, action="append", help="blind set (default: all)")
    thresholds = sub.add_parser("thresholds")
    thresholds.add_argument("model", type=Path)
    split = sub.add_parser("split", help="split a new blind set's helper files into a dev half and a test half")
    split.add_argument("files", type=Path, nargs="+")
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    if args.command == "split":
        print(split_blind_set(args.files, args.out, args.seed))
        return
    if args.command == "nlu":
        print(nlu_report(args.results))
    elif args.command == "safety-question":
        print(safety_question_report(tuple(args.half or BLIND_HALVES)))
    elif args.command == "thresholds":
        print(threshold_report(args.model))
    else:
        print(blind_report(tuple(args.half or BLIND_HALVES), semantic=not args.no_semantic))
        print(triage_report())


if __name__ == "__main__":
    main()
