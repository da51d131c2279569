"""Triage as patients write and as conversations unfold: normalisation, negation scope, the semantic detector,
findings that accumulate over turns and are retracted, and the dialogue policy that acts on them.

The phrases here were written for these tests, not taken from the blind set (tests/triage/blind/).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.importers.importer import TrainingDataImporter

from clinicbot.triage import AFFIRMED, LEXICON, NEGATED, RESOLVED, SEMANTIC, RedFlagTriage, TextNormaliser, default_triage
from clinicbot.triage_policy import CONVERSATION_SLOT, ConversationTriagePolicy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def triage() -> RedFlagTriage:
    return default_triage()


def statuses(result, name):
    return {finding.status for finding in result.details if finding.name == name}


# -- writing style ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, normalised", [
    ("MY BACK IS KILLING ME AND I CANT PEE", "my back is killing me and i can't pee"),
    ("im scared, didnt feel it and u said 2 wks", "i'm scared, didn't feel it and you said 2 weeks"),
    ("pain 2/52, numb 3/7", "pain 2 weeks, numb 3 days"),
    ("I can\u2019t feel it", "I can't feel it"),
    ("temp 38.4 and shivery", "temp a fever of 38.4 and shivery"),
    ("running 101.5 f since lunch", "running a fever of 101.5 f since lunch"),
    ("lost 38.5 kg, im 38, 38 weeks along", "lost 38.5 kg, i'm 38, 38 weeks along"),
])
def test_writing_style_is_normalised_before_matching(raw, normalised):
    assert TextNormaliser(default_triage().normaliser.words)(raw) == normalised


@pytest.mark.parametrize("text", [
    "MY LOWER BACK IS IN AGONY AND I CANT FEEL ANYTHING BETWEEN MY LEGS",
    "back is killing me n i cant feel nothin down there when i wipe",
    "lower back agony since sat and i cant pee, been tryin for hours",
])
def test_emergencies_in_caps_and_text_speak(triage, text):
    assert triage.assess(text).level == "EMERGENCY"


# -- negation scope and status -------------------------------------------------------------------------------------
def test_a_negation_covers_its_own_symptom_not_the_next_one(triage):
    result = triage.assess("No fever, but my back is agony and my groin has gone completely numb")
    assert result.level == "EMERGENCY"
    assert NEGATED in statuses(result, "fever")


def test_a_negated_verb_does_not_reach_into_the_clause_it_governs(triage):
    # "didn't realise" is about noticing; the bed-wetting is reported, and not noticing it is the red flag.
    result = triage.assess("My back has been sore all week and I didn't realise I had wet the bed until morning")
    assert result.level == "EMERGENCY"
    assert AFFIRMED in statuses(result, "incontinence")


def test_denied_symptoms_stay_denied(triage):
    result = triage.assess("My back aches after sex but I have no numbness and I haven't lost control of my bladder")
    assert result.level in ("NONE", "BOOKING")
    assert "EMERGENCY" != result.level


def test_resolved_in_the_past_does_not_count(triage):
    assert triage.assess("My leg went numb sitting cross-legged at the wedding, it was fine after I walked about").level == "NONE"
    assert triage.assess("I couldn't pee after my c-section years ago, that sorted itself out. Can I start running?").level == "NONE"


# -- the semantic detector -----------------------------------------------------------------------------------------
def test_the_semantic_detector_raises_a_sign_the_word_list_does_not_have(triage):
    # No listed phrase for "the toilet roll feels like cardboard on a dead patch".
    result = triage.assess("my back went on monday and now the bit I wipe feels dead, like wiping through cardboard")
    assert result.level == "EMERGENCY"
    saddle = [f for f in result.details if f.name == "saddle_numbness" and f.status == AFFIRMED]
    assert any(f.detector == SEMANTIC and f.score >= 0.6 for f in saddle)


def test_the_semantic_detector_keeps_harmless_near_misses_out(triage):
    assert triage.assess("I've leaked a little when I sneeze ever since my second baby, nothing has changed").level != "EMERGENCY"


def test_each_finding_says_which_detector_raised_it(triage):
    result = triage.assess("my back is killing me and I can't feel anything between my legs")
    detectors = {(f.name, f.detector) for f in result.details if f.status == AFFIRMED}
    assert ("saddle_numbness", LEXICON) in detectors
    assert all("turn" in detail and "detector" in detail for detail in result.as_dict()["details"])


# -- the conversation ----------------------------------------------------------------------------------------------
def test_back_pain_then_a_sign_in_the_next_message_is_an_emergency_at_that_turn(triage):
    levels = [r.level for r in triage.assess_conversation([
        "my lower back has been really sore since the weekend",
        "also kind of weird but I can't feel the toilet paper when I wipe",
    ])]
    assert levels[1] == "EMERGENCY"


def test_possible_pregnancy_in_one_message_and_fainting_in_another(triage):
    levels = [r.level for r in triage.assess_conversation([
        "my period is about 10 days late",
        "I just nearly fainted in the kitchen",
    ])]
    assert levels == ["NONE", "EMERGENCY"]


def test_the_emergency_stands_when_the_patient_asks_to_book_instead(triage):
    levels = [r.level for r in triage.assess_conversation([
        "my back is in agony and I wet myself without noticing",
        "I don't want to go to hospital, can I just book an appointment for next week?",
    ])]
    assert levels == ["EMERGENCY", "EMERGENCY"]


def test_a_later_message_that_clears_a_finding_up_retracts_it(triage):
    results = triage.assess_conversation([
        "back pain for three weeks and my leg goes numb",
        "sorry, I mean my leg only goes numb when I sit cross-legged for ages, it's fine as soon as I get up",
    ])
    assert results[0].level == "BOOKING"
    numb_leg = [f for f in results[1].details if f.name == "one_leg_numbness_or_weakness"]
    assert numb_leg[-1].status == RESOLVED and numb_leg[-1].turn == 1
    assert results[1].level == "BOOKING"  # three weeks of back pain still needs a clinician


def test_a_correction_that_says_it_was_in_the_past_takes_back_the_earlier_signs(triage):
    # The correction does not name the sign again ("that"); it says it was years ago and is over.
    results = triage.assess_conversation([
        "my lower back is sore and I can't feel my bottom when I sit on the loo",
        "sorry, badly worded! I meant I had that years ago after a fall, it went back to normal long ago",
    ])
    assert [r.level for r in results] == ["EMERGENCY", "NONE"]
    taken_back = [f for f in results[1].details if f.name == "saddle_numbness" and f.turn == 1]
    assert taken_back and taken_back[0].status == RESOLVED


def test_a_correction_without_a_cue_that_it_is_over_takes_nothing_back(triage):
    results = triage.assess_conversation([
        "my lower back is sore and I can't feel my bottom when I sit on the loo",
        "sorry I meant it's my bum AND my inner thighs",
    ])
    assert [r.level for r in results] == ["EMERGENCY", "EMERGENCY"]


def test_playing_it_down_is_not_a_correction(triage):
    results = triage.assess_conversation([
        "back's in bits and I peed myself on the sofa without feeling it",
        "to be honest it's probably nothing, I'll see how I am tomorrow",
    ])
    assert [r.level for r in results] == ["EMERGENCY", "EMERGENCY"]


def test_a_past_story_that_ended_is_not_an_emergency_now(triage):
    # The cue that it is over ("all fine since") is sentences away from the signs.
    assert triage.assess(
        "Back in 2012 my disc went and I couldn't feel my bum or control my bladder. I had surgery. "
        "All fine since then. Is yoga ok for me?").level == "NONE"
    # ... unless a sentence says it is happening now.
    assert triage.assess(
        "I had disc surgery in 2012 and it's been fine since. But today my back went again and I can't feel "
        "my bum on the toilet seat").level == "EMERGENCY"


def test_someone_who_told_them_about_it_is_reporting_not_supposing(triage):
    result = triage.assess("my boyfriend's back went at work and he just told me he can't feel his bum, he's lying on the floor")
    assert result.level == "EMERGENCY"


def test_a_hedged_negation_keeps_the_symptom(triage):
    result = triage.assess("I wouldn't say I can't feel anything down there but it's muffled, and my back has been agony since Friday")
    assert result.level == "EMERGENCY"


@pytest.mark.parametrize("text, level", [
    ("my herniated disc flared up on Monday and since last night I can't feel the paper when I wipe", "EMERGENCY"),
    ("pain is 8/10 in my lower back since I moved the sofa", "BOOKING"),
    ("sex has hurt every single time since the spring", "BOOKING"),
    ("62 and went through the change years ago, now some spotting after being intimate with my husband", "BOOKING"),
    ("tengo dolor de espalda y no siento nada allá abajo cuando me limpio", "EMERGENCY"),
    # A bulging disc is not a bulging bladder.
    ("my disc is bulging and it hurts", "NONE"),
])
def test_everyday_and_second_language_wording(triage, text, level):
    assert triage.assess(text).level == level


def test_the_learned_detector_is_trained_on_the_other_authors_phrases(triage):
    examples = triage.semantic.examples["incontinence"]
    assert examples.classifier is not None and examples.more_like is not None and len(examples.more_like) >= 60
    # The clinician-reviewed phrases alone decide by nearness; the other authors' only through the classifier.
    import yaml
    clinician = yaml.safe_load((ROOT / "data" / "triage" / "exemplars.yml").read_text(encoding="utf-8"))
    assert examples.like_text == clinician["findings"]["incontinence"]["like"]


def test_a_temperature_reading_is_a_fever(triage):
    assert triage.assess("lower back pain for 2 days and tonight im 39.2").level == "URGENT"
    assert triage.assess("lower back pain for 2 days, I'm 39 and otherwise healthy").level != "URGENT"


def test_a_sign_late_in_a_run_on_sentence_is_read_on_its_own(triage):
    """The whole run-on clause reads as a story about lifting; its last comma-separated piece is the sign."""
    text = "back went on monday lifting my toddler out of the cot, sitting on the toilet earlier i couldnt feel the seat under me at all"

    result = triage.assess(text)

    assert result.level == "EMERGENCY"
    assert any(f.name == "saddle_numbness" and "toilet" in f.words for f in result.details)


def test_a_reply_to_how_long_makes_pain_a_booking(triage):
    assert [r.level for r in triage.assess_conversation(["my back hurts after sex", "about 3 wks"])] == ["NONE", "BOOKING"]


# -- the dialogue policy -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def domain() -> Domain:
    # As training builds it: the retrieval action utter_faq comes from the FAQ data beside the domain.
    importer = TrainingDataImporter.load_from_config(
        str(ROOT / "config.yml"), str(ROOT / "domain.yml"),
        [str(ROOT / "data" / part) for part in ("nlu", "rules", "responses")])
    return importer.get_domain()


@pytest.fixture(scope="module")
def policy() -> ConversationTriagePolicy:
    return ConversationTriagePolicy(ConversationTriagePolicy.get_default_config(), None, None,
                                    ExecutionContext(GraphSchema({}), "test"))


def user(triage, text, intent="faq"):
    result = triage.assess(text)
    name = {"EMERGENCY": "red_flag_emergency", "URGENT": "red_flag_urgent", "BOOKING": "red_flag_booking"}.get(
        result.level, intent)
    return UserUttered(text, {"name": name, "confidence": 1.0}, parse_data={"triage": result.as_dict()})


def predicted(policy, domain, events):
    tracker = DialogueStateTracker.from_events("patient", events, slots=domain.slots)
    prediction = policy.predict_action_probabilities(tracker, domain)
    best = max(range(len(prediction.probabilities)), key=prediction.probabilities.__getitem__)
    action = domain.action_names_or_texts[best] if prediction.max_confidence > 0 else None
    return action, prediction.events


def test_policy_gives_the_emergency_advice_when_the_sign_comes_in_a_later_message(policy, domain, triage):
    events = [ActionExecuted("action_listen"), user(triage, "my back's been really bad since Saturday"),
              ActionExecuted("utter_triage_booking"), ActionExecuted("action_triage_followup"),
              ActionExecuted("utter_offer_booking"), ActionExecuted("action_listen"),
              user(triage, "and this morning I can't feel the paper when I wipe")]
    action, recorded = predicted(policy, domain, events)
    assert action == "utter_triage_emergency"
    slot = next(e for e in recorded if isinstance(e, SlotSet) and e.key == CONVERSATION_SLOT)
    assert slot.value["level"] == "EMERGENCY"
    assert {f["turn"] for f in slot.value["findings"] if f["status"] == "affirmed"} == {1, 2}
    # then the follow-up that records it for staff, then it listens
    action, _ = predicted(policy, domain, events + [ActionExecuted("utter_triage_emergency")])
    assert action == "action_triage_followup"
    action, _ = predicted(policy, domain, events + [ActionExecuted("utter_triage_emergency"),
                                                    ActionExecuted("action_triage_followup")])
    assert action == "action_listen"


def test_policy_repeats_the_emergency_instruction_before_a_booking(policy, domain, triage):
    events = [ActionExecuted("action_listen"), user(triage, "my back is agony and my bum has gone numb"),
              ActionExecuted("utter_triage_emergency"), ActionExecuted("action_triage_followup"),
              ActionExecuted("action_listen"),
              user(triage, "it's probably nothing, can I just book for Monday", intent="book_appointment")]
    assert predicted(policy, domain, events)[0] == "utter_triage_emergency_reminder"
    assert predicted(policy, domain, events + [ActionExecuted("utter_triage_emergency_reminder")])[0] == "booking_form"


def test_policy_stays_out_of_ordinary_turns(policy, domain, triage):
    events = [ActionExecuted("action_listen"), user(triage, "why does my back hurt after sex")]
    assert predicted(policy, domain, events)[0] is None


def test_a_sign_the_classifier_only_suspects_gets_the_safety_question_not_silence(policy, domain, triage):
    """Between 60% and 95% sure of a cauda-equina sign, the learned detector raises possible_cauda_equina_sign:
    no level of its own, but with back pain the bot gives the advice the message needs, then the safety question."""
    text = "bad back for 3 days and earlier I went to the bathroom and couldnt tell if anything came out"
    result = triage.assess(text)
    [suspected] = [f for f in result.details if f.name == "possible_cauda_equina_sign"]
    assert result.level == "BOOKING"
    assert (suspected.detector, suspected.status) == ("learned", "affirmed") and 0.6 <= suspected.score < 0.95

    events = [ActionExecuted("action_listen"), user(triage, text)]
    said = []
    for _ in range(5):
        action = predicted(policy, domain, events)[0]
        if action in (None, "action_listen"):
            break
        said.append(action)
        events.append(ActionExecuted(action))
    assert said == ["utter_triage_booking", "action_triage_followup", "utter_ask_cauda_equina_signs"]


def test_policy_asks_one_safety_net_question_when_a_sign_is_only_suggested(policy, domain, triage):
    events = [ActionExecuted("action_listen"),
              user(triage, "my back has been aching since yesterday and my legs feel kind of funny, what stretches help?")]
    assert triage.assess(events[1].text).level != "EMERGENCY"
    assert predicted(policy, domain, events)[0] == "utter_faq"  # their question first
    asked = events + [ActionExecuted("utter_faq")]
    assert predicted(policy, domain, asked)[0] == "utter_ask_cauda_equina_signs"
    asked += [ActionExecuted("utter_ask_cauda_equina_signs"), ActionExecuted("action_listen")]
    # Yes (button or typed) is the sign: the emergency instruction, and it is recorded with where it came from.
    action, recorded = predicted(policy, domain, asked + [UserUttered("yes", {"name": "affirm", "confidence": 1.0})])
    assert action == "utter_triage_emergency"
    slot = next(e for e in recorded if isinstance(e, SlotSet) and e.key == CONVERSATION_SLOT)
    assert {"name": "cauda_equina_sign_reported", "status": "affirmed", "detector": "safety_net"}.items() <= next(
        f for f in slot.value["findings"] if f["name"] == "cauda_equina_sign_reported").items()
    # No: a reassuring reply, and the question is never asked again in this conversation.
    denied = asked + [UserUttered("no", {"name": "deny", "confidence": 1.0})]
    assert predicted(policy, domain, denied)[0] == "utter_safety_net_no"
    later = denied + [ActionExecuted("utter_safety_net_no"), ActionExecuted("action_listen"),
                      user(triage, "my legs still feel funny and my back aches")]
    assert predicted(policy, domain, later)[0] != "utter_ask_cauda_equina_signs"


# -- safeguarding --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, kinds", [
    ("some nights I just want to kill myself", ("self_harm",)),
    ("my husband hits me when I say no to sex", ("abuse",)),
    ("I was raped last year and sex has hurt ever since", ("sexual_assault",)),
    ("I'm not suicidal, I just want the pain to stop", ()),
    ("what are the signs of domestic abuse? I'm making a leaflet for the waiting room", ()),
    ("why does my back hurt after sex", ()),
])
def test_safeguarding_disclosures_are_recognised_and_negations_are_not(triage, text, kinds):
    assert triage.assess(text).safeguarding == kinds


def test_policy_answers_a_disclosure_with_the_helplines_first_and_flags_it_once(policy, domain, triage):
    events = [ActionExecuted("action_listen"), user(triage, "honestly some days I want to end my life", intent="out_of_scope")]
    assert predicted(policy, domain, events)[0] == "utter_safeguarding_self_harm"
    events.append(ActionExecuted("utter_safeguarding_self_harm"))
    assert predicted(policy, domain, events)[0] == "action_flag_safeguarding"
    events.append(ActionExecuted("action_flag_safeguarding"))
    assert predicted(policy, domain, events)[0] == "action_listen"
    events += [ActionExecuted("action_listen"), user(triage, "what is vaginismus")]
    assert predicted(policy, domain, events)[0] is None  # given once; ordinary questions go on as usual
