"""The response generator the Rasa server runs (endpoints.yml `nlg`): the helplines a clinic configures, and the
disclaimer's place. Through the whole bot: tests/test_conversations.py and tests/channels/test_telegram.py."""
from __future__ import annotations

import asyncio

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from clinicbot.nlg import ClinicNaturalLanguageGenerator
from clinicbot.settings import PROJECT_ROOT

DOMAIN = Domain.load([str(PROJECT_ROOT / "domain.yml"), str(PROJECT_ROOT / "data" / "responses" / "faq.yml")])


def generate(action: str, events=()) -> dict:
    tracker = DialogueStateTracker.from_events("patient-1", [SessionStarted(), ActionExecuted("action_listen"),
                                                             UserUttered("hello"), *events], DOMAIN.slots)
    return asyncio.run(ClinicNaturalLanguageGenerator(domain=DOMAIN).generate(action, tracker, "rest"))


@pytest.mark.parametrize("response, variable, phone", [
    ("utter_safeguarding_self_harm", "HELPLINE_CRISIS", "call Lifeline on 13 11 14"),
    ("utter_safeguarding_abuse", "HELPLINE_DOMESTIC_VIOLENCE", "1800RESPECT on 1800 737 732"),
    ("utter_safeguarding_sexual_assault", "HELPLINE_SEXUAL_ASSAULT", "1800RESPECT on 1800 737 732"),
])
def test_a_clinic_outside_the_us_sets_its_own_helplines(monkeypatch, response, variable, phone):
    monkeypatch.setenv(variable, phone)
    text = generate(response)["text"]
    assert phone in text
    assert not any(us in text for us in ("988", "1-800-799-7233", "1-800-656-4673", "{"))


def test_the_us_helplines_are_the_default():
    texts = [generate(name)["text"] for name in
             ("utter_safeguarding_self_harm", "utter_safeguarding_abuse", "utter_safeguarding_sexual_assault")]
    assert "call or text 988" in texts[0]
    assert "1-800-799-7233" in texts[1] and "text START to 88788" in texts[1]
    assert "1-800-656-4673" in texts[2]


def test_the_clinic_details_fill_every_response_without_the_action_passing_them(monkeypatch):
    monkeypatch.setenv("CLINIC_PHONE", "+61 2 5550 1234")
    assert "+61 2 5550 1234" in generate("utter_handoff")["text"]


def test_the_disclaimer_ends_the_first_message_of_a_session_only():
    first = generate("utter_faq/back_pain_after_sex_causes")["text"]
    later = generate("utter_faq/back_pain_after_sex_causes", [BotUttered("earlier answer")])["text"]
    assert first.endswith("not a diagnosis or medical advice. In an emergency, call 911.)")
    assert "\n\n" not in first  # a blank line would make Rasa's channels send the disclaimer as a message of its own
    assert "not a diagnosis" not in later


@pytest.mark.parametrize("advice", ["utter_triage_emergency", "utter_triage_urgent", "utter_safeguarding_abuse"])
def test_no_disclaimer_on_or_after_an_instruction_or_a_safeguarding_reply(advice):
    assert "not a diagnosis" not in generate(advice)["text"]
    after = BotUttered("advice", data={"custom": {"triage_level": "EMERGENCY"}})
    assert "not a diagnosis" not in generate("utter_faq/back_pain_after_sex_causes", [after])["text"]
