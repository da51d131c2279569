"""`make eval`: NLU quality on the held-out set and triage precision/recall per level.

    python -m clinicbot.evaluation nlu results/nlu   # summarise `rasa test nlu` reports
    python -m clinicbot.evaluation triage            # triage on the labelled and the independent holdout set
    python -m clinicbot.evaluation thresholds MODEL  # tune the unsure-answer fallback threshold
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import yaml

from clinicbot.settings import PROJECT_ROOT
from clinicbot.triage import LEVELS

TRIAGE_SETS = {
    "labelled (development)": PROJECT_ROOT / "tests" / "triage" / "labelled_messages.yml",
    "holdout (independent)": PROJECT_ROOT / "tests" / "triage" / "holdout_messages.yml",
}


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
        scores = per_level_scores(pairs)
        accuracy = sum(e == p for e, p in pairs) / len(pairs)
        lines.append(f"\nTriage, {name}: {len(items)} messages, accuracy {accuracy:.1%}")
        lines.append("| level | precision | recall | support |")
        lines.append("|---|---|---|---|")
        for level in LEVELS:
            s = scores[level]
            lines.append(f"| {level} | {s['precision']:.1%} | {s['recall']:.1%} | {int(s['support'])} |")
        errors = Counter((e, p) for e, p in pairs if e != p)
        if errors:
            lines.append("confusions (expected -> predicted): " + ", ".join(f"{e}->{p} x{n}" for (e, p), n in errors.most_common()))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    nlu = sub.add_parser("nlu")
    nlu.add_argument("results", type=Path)
    sub.add_parser("triage")
    thresholds = sub.add_parser("thresholds")
    thresholds.add_argument("model", type=Path)
    args = parser.parse_args()
    if args.command == "nlu":
        print(nlu_report(args.results))
    elif args.command == "thresholds":
        print(threshold_report(args.model))
    else:
        print(triage_report())


if __name__ == "__main__":
    main()
