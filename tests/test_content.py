"""What the answers say, checked against the clinical rules they must follow (issue 10). No model needed."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAQ = yaml.safe_load((ROOT / "data" / "responses" / "faq.yml").read_text(encoding="utf-8"))["responses"]
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))["responses"]


def text(responses, name: str) -> str:
    return " ".join(variant["text"] for variant in responses[name])


@pytest.mark.parametrize("name", sorted(FAQ))
def test_answers_that_name_a_treatment_not_for_pregnancy_say_so(name):
    # Seeds 000 and 001: ultrasound, cold laser, biofeedback and e-stim are not recommended in pregnancy.
    answer = text(FAQ, name).lower()
    if re.search(r"ultrasound|cold laser|biofeedback|e-stim", answer):
        assert "pregnan" in answer


@pytest.mark.parametrize("name", ["utter_faq/back_pain_when_to_see_doctor", "utter_faq/herniated_disc_sciatica_sex"])
def test_back_pain_answers_name_the_emergency_signs(name):
    answer = text(FAQ, name)
    assert "911" in answer
    for sign in ("numbness between your legs", "bladder", "bowels", "both legs"):
        assert sign in answer


def test_the_emergency_signs_come_before_the_see_a_doctor_list():
    answer = text(FAQ, "utter_faq/back_pain_when_to_see_doctor")
    assert answer.index("911") < answer.index("worth getting medical advice")


def test_the_booking_reply_says_what_to_do_if_it_gets_worse():
    reply = text(DOMAIN, "utter_triage_booking")
    assert "call the clinic" in reply and "911" in reply and "numbness between your legs" in reply


def test_the_urgent_reply_puts_same_day_care_first_and_offers_only_a_follow_up():
    assert "today" in text(DOMAIN, "utter_triage_urgent")
    offer = text(DOMAIN, "utter_offer_follow_up_booking")
    assert "after you've been seen today" in offer.lower()
