"""Red-flag triage on labelled patient messages, and the behaviours the issue names one by one.

tests/triage/labelled_messages.yml is the development set (the rules were tuned on it);
tests/triage/holdout_messages.yml was written independently, from the policy only, to measure
generalisation: its figures are reported in docs/triage-evaluation.md.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clinicbot.evaluation import per_level_scores
from clinicbot.triage import RedFlagTriage, default_triage

HERE = Path(__file__).parent
LABELLED = yaml.safe_load((HERE / "triage" / "labelled_messages.yml").read_text(encoding="utf-8"))
HOLDOUT = yaml.safe_load((HERE / "triage" / "holdout_messages.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def triage() -> RedFlagTriage:
    return default_triage()


def test_the_labelled_set_is_big_enough_and_covers_every_level():
    assert len(LABELLED) >= 200
    levels = {item["level"] for item in LABELLED}
    assert levels == {"EMERGENCY", "URGENT", "BOOKING", "NONE"}
    kinds = {item["kind"] for item in LABELLED}
    assert {"negated", "hypothetical", "third_person", "typo", "long"} <= kinds


def test_recall_targets_on_the_labelled_set(triage):
    predictions = [(item["level"], triage.assess(item["text"]).level) for item in LABELLED]
    scores = per_level_scores(predictions)
    missed_emergencies = [
        item["text"] for item in LABELLED
        if item["level"] == "EMERGENCY" and triage.assess(item["text"]).level != "EMERGENCY"
    ]
    assert missed_emergencies == []
    assert scores["EMERGENCY"]["recall"] == 1.0
    assert scores["URGENT"]["recall"] >= 0.95
    assert scores["BOOKING"]["recall"] >= 0.95


def test_no_emergency_for_negated_or_hypothetical_messages(triage):
    calm = [item for item in LABELLED + HOLDOUT if item["kind"] in {"negated", "hypothetical", "informational"}
            and item["level"] != "EMERGENCY"]
    alarmed = [item["text"] for item in calm if triage.assess(item["text"]).level == "EMERGENCY"]
    assert alarmed == []


@pytest.mark.parametrize(
    "text, level",
    [
        # The three "done when" messages
        ("I can't feel anything between my legs and I can't pee", "EMERGENCY"),
        ("I get tingling in my left leg after sex", "BOOKING"),
        ("no numbness or tingling, just a sore back after sex", "NONE"),
        # Combinations matter
        ("numbness in my groin and my back hurts", "EMERGENCY"),
        ("my groin has been numb since yesterday", "URGENT"),
        # Negation, hypotheticals, resolved
        ("I don't have any weakness in my legs", "NONE"),
        ("denies tingling in the groin, back is a bit sore", "NONE"),
        ("what are the warning signs?", "NONE"),
        ("what if I had numbness between my legs and back pain?", "NONE"),
        ("I used to have tingling in my leg, it's gone now", "NONE"),
        # Someone else's symptoms keep their level
        ("my wife can't feel her legs and wet herself", "EMERGENCY"),
        # Inflections and misspellings
        ("my left leg tingles and has for two weeks", "BOOKING"),
        ("numbnes between my legs and lower back pain", "EMERGENCY"),
        ("cant pee and my back is killing me", "EMERGENCY"),
        # Pregnancy
        ("I'm 7 weeks pregnant with sudden severe pain on my left side", "EMERGENCY"),
        ("I'm pregnant and I've had some bleeding", "URGENT"),
        # Plain questions
        ("why does my back hurt after sex", "NONE"),
        ("sex hurts since my baby", "BOOKING"),
    ],
)
def test_named_behaviours(triage, text, level):
    assert triage.assess(text).level == level


@pytest.mark.parametrize(
    "text, level",
    [
        # A conditional clause is hypothetical to its end (the dependency parse), not for eight words only
        ("if my dad ever had a bad back again and couldn't feel the toilet seat under him what would we do", "NONE"),
        ("what should I do if my husband ends up with back pain and can't tell when he's peeing", "NONE"),
        # ... but an "if" that means "whether" is a report
        ("my back is agony and I honestly don't know if I've wet myself", "EMERGENCY"),
        # A question asked for study: its sentences without I/my/me are the question
        ("Nursing student here. For my essay: back pain with numb buttocks, is that an emergency?", "NONE"),
        ("For my exam I'm revising red flags, but also my own back hurts and I can't feel my bum when I wipe", "EMERGENCY"),
        # "since <time>" is now, even in a message that tells an old, resolved story
        ("Had a slipped disc years ago, fully healed. Since this morning my back is sore and both legs are weak", "EMERGENCY"),
        # Possibly pregnant without the word: contraception that may have failed, with the ectopic signs
        ("my coil might have slipped, now sudden sharp pain low on my right side", "EMERGENCY"),
        ("the condom split last month and today I fainted in the shower", "EMERGENCY"),
        ("I have a copper coil and sex hurts sometimes", "NONE"),
        # Words from other Englishes
        ("back a kill mi all week an mi cyaan feel nutten down there", "EMERGENCY"),
        ("back is paining since 4 days, today motion came in my pants without knowing", "EMERGENCY"),
        ("both my knees keep giving way and my lower back is killing me", "EMERGENCY"),
        ("fever of 38.8 a week after my section", "URGENT"),
        ("it hurts with sex, at the opening, since Easter", "BOOKING"),
        # Onset long ago, still going on: not resolved
        ("my sciatica started three years ago and it's getting worse, now both legs go numb", "EMERGENCY"),
        # A subjectless "went away" finishes the sentence before it; a resolved cue never reaches a new story
        ("my bum went numb on the long drive home lol. wore off after ten minutes", "NONE"),
        # Emoji for pain, voice typing's homophones
        ("lower back 😫 for like 2 weeks now", "BOOKING"),
        ("my blather won't empty and my back is agony", "EMERGENCY"),
        # More words for pain and for worse; a named condition and its flare in different sentences
        ("bit of a twinge in my lower back for a fortnight", "BOOKING"),
        ("I had a fusion at L4 in 2019. Since the summer the back has been going downhill", "BOOKING"),
        ("ever since my son was born sex still hurts", "BOOKING"),
        # Situational numbness that is fine again
        ("saddle went numb on a long bike ride, completely fine within the hour", "NONE"),
    ],
)
def test_session_6_mechanisms(triage, text, level):
    assert triage.assess(text).level == level


def test_result_explains_itself(triage):
    result = triage.assess("I can't feel anything between my legs and I can't pee")
    assert result.rule == "two_cauda_equina_signs"
    assert any("pee" in word for word in result.matched)
    assert any("between my legs" in word for word in result.matched)


def test_negated_words_are_reported_as_suppressed(triage):
    result = triage.assess("no numbness or tingling, just a sore back after sex")
    assert result.level == "NONE"
    assert "numbness: negated" in result.suppressed


def test_long_message_with_a_buried_red_flag(triage):
    filler = "I have been reading about pelvic floor therapy and posture. " * 60
    text = filler + "Since this morning I can't pee and my lower back is agony. " + filler
    assert len(text) > 5000
    assert triage.assess(text).level == "EMERGENCY"


def test_empty_and_markup_messages_are_safe(triage):
    assert triage.assess("").level == "NONE"
    assert triage.assess("   ").level == "NONE"
    assert triage.assess("<script>alert('x')</script>").level == "NONE"


def test_rules_file_with_an_unknown_term_is_rejected(tmp_path, triage):
    broken = tmp_path / "rules.yml"
    broken.write_text(
        "terms: {pain: [pain]}\nfindings: {x: [[ache]]}\nrules: []\ncontext: {}\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="unknown term"):
        RedFlagTriage.load(broken, nlp=triage.nlp)


@pytest.mark.parametrize("texts, levels", [
    # The other leg named in a later message: both legs
    (["sciatica down my left leg for 2 weeks", "now it's in the right leg too, same shooting pain"],
     ["BOOKING", "EMERGENCY"]),
    # A later general denial of numbness takes back the feeling sign
    (["my back aches and it's strange down there when I wipe", "no no, not numb at all, I can feel everything normally, just itchy"],
     ["EMERGENCY", "NONE"]),
    # "I should have explained": a correction takes back the signs it does not affirm again
    (["I'm 70, my back aches and I lost control of my bladder",
      "oh dear, I should have explained, that was in 2001 after my operation and it all settled. Nothing like that now"],
     ["EMERGENCY", "BOOKING"]),
    # ... but better is not gone
    (["my back aches and it's strange down there when I wipe", "ok it's not as numb as this morning"],
     ["EMERGENCY", "EMERGENCY"]),
])
def test_session_6_conversations(triage, texts, levels):
    assert [result.level for result in triage.assess_conversation(texts)] == levels
