"""Plain language: every patient-facing response reads at US grade 8 or below (the clinic's "grade 6-8" rule).

No model needed. The measure is textstat.flesch_kincaid_grade (textstat 0.7.4, pinned), computed per response text:
every variation of every response in domain.yml and data/responses/*.yml.

What is measured, and why
- The source line ("Source: ...") is removed: it must name the article exactly, so its wording is not ours to simplify.
- {placeholders} are removed: what fills them (a phone number, a name) is not prose.
- Markdown is removed (list markers, emphasis, links, headings) and so are emoji and other symbols. Each line is read
  as its own sentence, as a chat bubble shows it: a line that does not end in . ! or ? gets a full stop (a list item
  has no full stop, and without one the formula would read a whole list as one very long sentence).
- Texts of fewer than 15 words after that are exempt: the formula is not meaningful on a sentence or two (one long
  word can put a five-word question at grade 12). Everything else must be at grade 8.0 or lower.

Syllables are counted with pyphen's English hyphenation, offline. Why textstat 0.7.4: requirements.in.
"""
from __future__ import annotations

import re
import statistics
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESPONSE_FILES = [ROOT / "domain.yml", *sorted((ROOT / "data" / "responses").glob("*.yml"))]
MAX_GRADE = 8.0
MIN_WORDS = 15


def response_texts() -> list[tuple[str, str]]:
    """(label, text) for every variation of every response that has a text; label is file:response[#variation]."""
    found = []
    for path in RESPONSE_FILES:
        responses = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("responses") or {}
        for name, variations in responses.items():
            for index, variation in enumerate(variations or []):
                if isinstance(variation, dict) and variation.get("text"):
                    found.append((f"{path.relative_to(ROOT)}:{name}#{index}", variation["text"]))
    return found


def prose(text: str) -> str:
    """The text a patient reads, as the grade formula should see it (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\{[A-Za-z0-9_]+\}", "", text)  # {placeholders}
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [link](url) -> link
    text = re.sub(r"(\*\*|__|`)", "", text)  # bold, code
    text = re.sub(r"(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)", "", text)  # *italic*, _italic_
    text = "".join(c for c in text if unicodedata.category(c) not in ("So", "Sk", "Cf") and c != "\ufe0f")
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("Source:"):
            continue
        line = re.sub(r"^(#+\s+|[-*+]\s+|\d+[.)]\s+)", "", line)  # heading, list marker
        line = re.sub(r"\(\s*\)", "", line)  # parentheses a placeholder emptied
        line = re.sub(r"\s{2,}", " ", line).strip()
        if line.endswith(":"):
            line = line[:-1] + "."
        elif not re.search(r"[.!?][\"')]*$", line):
            line += "."
        lines.append(line)
    return " ".join(lines)


@pytest.fixture(scope="module")
def textstat():
    """textstat, English (syllables from pyphen's hyphenation dictionary, shipped in the wheel)."""
    import textstat as module

    module.set_lang("en_US")
    return module


def grades(textstat) -> dict[str, float | None]:
    """label -> grade, or None for a text exempt for being under MIN_WORDS words."""
    result = {}
    for label, text in response_texts():
        readable = prose(text)
        result[label] = textstat.flesch_kincaid_grade(readable) if textstat.lexicon_count(readable) >= MIN_WORDS else None
    return result


def test_every_response_text_is_found():
    labels = [label for label, _ in response_texts()]
    assert any(":utter_greet#" in label for label in labels)
    assert any(label.startswith("data/responses/faq.yml:utter_faq/") for label in labels)
    assert len(labels) == len(set(labels))


def test_prose_drops_the_source_line_placeholders_and_markdown():
    text = 'Call {clinic_phone} ({clinic_hours}) **now**.\n- numbness\n- weakness\nSource: "An Article"'
    assert prose(text) == "Call now. numbness. weakness."


def test_every_patient_facing_text_reads_at_grade_8_or_below(textstat):
    measured = grades(textstat)
    graded = {label: grade for label, grade in measured.items() if grade is not None}
    print(f"\n{len(graded)} of {len(measured)} texts graded; median grade {statistics.median(graded.values()):.1f}, "
          f"max {max(graded.values()):.1f}")
    too_hard = {label: grade for label, grade in graded.items() if grade > MAX_GRADE}
    assert not too_hard, "Above grade 8 (Flesch-Kincaid):\n" + "\n".join(
        f"  {grade:5.1f}  {label}" for label, grade in sorted(too_hard.items(), key=lambda item: -item[1])
    )
