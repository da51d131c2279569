"""Every answer is faithful to the article it names: machine-checked, no model needed.

data/content/support.yml lists, for each answer in data/responses/faq.yml, the seed articles it cites and short
exact quotes from them that its key claims rest on (and, for the medical replies in domain.yml, the red-flag
policy sentences). This test checks that
  (a) every FAQ answer has an entry, and every entry an answer;
  (b) every quote is in its article word for word (after normalising whitespace and curly quotes);
  (c) the answer's Source lines name exactly the articles its quotes come from, by the titles the articles' index
      gives them;
and that the hedges, scopes and warnings the clinic decided to keep are still there (docs/content-decisions.md),
and that docs/content-review.md is what tests/content_review.py writes from all of this.

The articles are the clinic's, at ../shared beside the checkout; data/content/sources/ is a copy of them in the
repository, so that a clean clone anywhere (CI) checks the answers. When ../shared is there, the copy must equal it.
"""
from __future__ import annotations

import re

import pytest

from tests.content_review import (
    DOMAIN_FILE,
    FAQ_FILE,
    POLICY_NAME,
    REVIEW_FILE,
    CLINIC_SHARED,
    SEEDS,
    SHARED,
    SUPPORT_FILE,
    decision_ids,
    load,
    normalise,
    render,
    responses,
    seed_titles,
    source_titles,
)

FAQ = responses(FAQ_FILE)
DOMAIN = responses(DOMAIN_FILE)
SUPPORT = load(SUPPORT_FILE)
ANSWERS = SUPPORT.get("answers") or {}
MEDICAL = SUPPORT.get("responses") or {}
# The domain.yml replies that give medical advice: each must say what in the red-flag policy it rests on.
MEDICAL_PREFIXES = ("utter_triage_", "utter_see_doctor_", "utter_safeguarding_", "utter_safety_net", "utter_ask_cauda")


def _read(path) -> str:
    if not path.is_file():
        pytest.fail(f"{path} is missing: data/content/sources/ must hold the articles and the red-flag policy")
    return normalise(path.read_text(encoding="utf-8"))


def test_the_copy_of_the_articles_is_the_clinics():
    """data/content/sources/ is what the answers are checked against; it must not drift from ../shared."""
    if not CLINIC_SHARED.is_dir():
        pytest.skip("no ../shared beside this checkout (a CI clone): the committed copy is what is checked")
    copied = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*") if p.is_file())
    assert copied, "data/content/sources/ is empty"
    for relative in copied:
        assert (SHARED / relative).read_bytes() == (CLINIC_SHARED / relative).read_bytes(), (
            f"{relative} differs from ../shared: copy the clinic's version in and re-run the faithfulness test")
    seeds = sorted(p.name for p in (CLINIC_SHARED / "seeds").glob("*.txt"))
    assert seeds == sorted(p.name for p in SEEDS.glob("*.txt")), "the clinic has a seed the copy lacks"


def _quotes():
    for name, entry in ANSWERS.items():
        for seed, quotes in (entry.get("sources") or {}).items():
            for quote in quotes or []:
                yield pytest.param(seed, quote, id=f"{name}|{seed[:3]}|{quote[:40]}")


def _policy_quotes():
    for section in (ANSWERS, MEDICAL):
        for name, entry in section.items():
            for quote in entry.get("policy") or []:
                yield pytest.param(quote, id=f"{name}|{quote[:40]}")


# --- the articles themselves -----------------------------------------------------------------------------------

def test_the_seed_index_names_four_articles_that_exist():
    titles = seed_titles()
    assert len(titles) == 4, f"the articles' index (README.md) should list the four seeds, found {titles}"
    for seed, title in titles.items():
        assert normalise(title) in _read(SEEDS / seed), f"{seed} does not carry the title the index gives it: {title!r}"


# --- (a) every answer has an entry -----------------------------------------------------------------------------

def test_every_faq_answer_has_support_and_every_entry_an_answer():
    assert FAQ, "no answers read from data/responses/faq.yml"
    assert sorted(set(FAQ) - set(ANSWERS)) == [], "answers with no entry in data/content/support.yml"
    assert sorted(set(ANSWERS) - set(FAQ)) == [], "entries in data/content/support.yml for answers that do not exist"


@pytest.mark.parametrize("name", sorted(FAQ))
def test_every_answer_rests_on_at_least_one_quote(name):
    sources = ANSWERS.get(name, {}).get("sources") or {}
    assert sources and all(sources.values()), f"{name}: no quotes"


def test_every_medical_reply_in_the_domain_has_policy_support():
    medical = sorted(name for name in DOMAIN if name.startswith(MEDICAL_PREFIXES))
    assert medical, "no medical replies found in domain.yml"
    assert sorted(set(medical) - set(MEDICAL)) == [], "medical replies with no entry under `responses:` in support.yml"
    assert sorted(set(MEDICAL) - set(DOMAIN)) == [], "support.yml entries for replies that are not in domain.yml"
    assert all(entry.get("policy") for entry in MEDICAL.values())


# --- (b) every quote is word for word in its article -----------------------------------------------------------

@pytest.mark.parametrize("seed, quote", list(_quotes()))
def test_quote_is_in_the_article(seed, quote):
    assert seed in seed_titles(), f"{seed} is not one of the seeds in the articles' index"
    assert normalise(quote) in _read(SEEDS / seed), f"not word for word in {seed}: {quote!r}"


@pytest.mark.parametrize("quote", list(_policy_quotes()))
def test_quote_is_in_the_red_flag_policy(quote):
    assert normalise(quote) in _read(SHARED / POLICY_NAME), f"not word for word in {POLICY_NAME}: {quote!r}"


# --- (c) the Source lines name the articles the quotes come from -----------------------------------------------

@pytest.mark.parametrize("name", sorted(FAQ))
def test_source_lines_name_the_cited_articles_by_their_index_titles(name):
    titles = seed_titles()
    named = [normalise(title) for title in source_titles(FAQ[name])]
    assert named, f"{name} has no Source line"
    known = {normalise(title) for title in titles.values()}
    assert [t for t in named if t not in known] == [], f"{name}: Source names an article that is not in the index"
    cited = {normalise(titles.get(seed, seed)) for seed in ANSWERS.get(name, {}).get("sources") or {}}
    assert set(named) == cited, f"{name}: Source lines name {sorted(set(named))}, its quotes come from {sorted(cited)}"


# --- the hedges, scopes and warnings the clinic decided on ----------------------------------------------------

@pytest.mark.parametrize("name", sorted(FAQ))
def test_answer_keeps_what_it_must_and_avoids_what_it_must_not(name):
    entry, text = ANSWERS.get(name, {}), normalise(FAQ[name]).lower()
    missing = [p for p in entry.get("must_say") or [] if normalise(p).lower() not in text]
    present = [p for p in entry.get("must_not_say") or [] if normalise(p).lower() in text]
    assert not missing and not present, f"{name}: lost {missing}; says {present}"


CORE_EXERCISE = re.compile(r"\bplanks?\b|\bcore (exercises?|strength|stabilization)\b|\bexercises for your core\b", re.I)
PELVIC_FLOOR_TONING = re.compile(r"\bton(e|es|ing)\b|\bkegels?\b|pelvic floor muscles draw up", re.I)
CLINIC_RESULT = re.compile(r"\bpatients report\b|\bmost of (its|our) patients\b", re.I)


@pytest.mark.parametrize("name", sorted(FAQ))
def test_core_exercises_come_with_the_technique_warning(name):
    # Seed 000: "People often do these exercises incorrectly, straining their pelvic floor and back."
    text = normalise(FAQ[name])
    if CORE_EXERCISE.search(text):
        assert re.search(r"often do (core exercises|these|them) wrong", text, re.I), name
        assert "Back and Hip Problems That Can Make Sex Hurt" in text, f"{name}: the warning is seed 000's; name it"


@pytest.mark.parametrize("name", sorted(FAQ))
def test_pelvic_floor_toning_comes_only_after_relaxing(name):
    # Seed 001: "Pelvic floor toning exercises—only after your pelvic muscles are relaxed and stretched."
    text = normalise(FAQ[name])
    if PELVIC_FLOOR_TONING.search(text):
        assert "relaxed and stretched" in text, name


@pytest.mark.parametrize("name", sorted(FAQ))
def test_one_clinics_results_are_that_clinics(name):
    # Seed 001: "the majority of our patients report..." is the writing clinic's experience, not a general fact.
    text = normalise(FAQ[name])
    assert "our patients" not in text.lower(), name
    if CLINIC_RESULT.search(text):
        assert "The clinic that wrote the article says" in text, name


def test_every_decision_an_answer_cites_is_recorded():
    recorded = set(decision_ids())
    assert recorded, "docs/content-decisions.md defines no decisions"
    cited = {d for section in (ANSWERS, MEDICAL) for entry in section.values() for d in entry.get("decisions") or []}
    assert sorted(cited - recorded) == [], "decisions cited in support.yml but not in docs/content-decisions.md"


# --- how it is shown to the clinician --------------------------------------------------------------------------

def test_the_content_review_is_up_to_date():
    assert REVIEW_FILE.is_file(), "docs/content-review.md is missing: PYTHONPATH=. .venv/bin/python -m tests.content_review"
    assert REVIEW_FILE.read_text(encoding="utf-8") == render(), (
        "docs/content-review.md is out of date: PYTHONPATH=. .venv/bin/python -m tests.content_review")
