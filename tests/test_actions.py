"""Custom actions in the rasa-sdk style: an inline Tracker, a CollectingDispatcher, and asserts on the
returned events, the responses chosen and the rows stored (a real SQLite database per test)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

import actions.booking_actions as booking_actions
import actions.conversation_actions as conversation_actions
import actions.triage_actions as triage_actions
from clinicbot.settings import load_settings
from clinicbot.storage import Store, booking_reference

DOMAIN = yaml.safe_load((Path(__file__).parent.parent / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path / "outbox")
    for module in (booking_actions, conversation_actions, triage_actions):
        monkeypatch.setattr(module, "default_store", lambda: store)
    return store


def make_tracker(slots=None, latest_message=None, events=None, active_loop=None, sender="patient-1") -> Tracker:
    return Tracker(
        sender_id=sender,
        slots=slots or {},
        latest_message=latest_message or {"intent": {"name": "affirm"}, "entities": [], "text": "yes"},
        events=events or [],
        paused=False,
        followup_action=None,
        active_loop=active_loop or {},
        latest_action_name="action_listen",
    )


def responses(dispatcher: CollectingDispatcher):
    return [message["response"] for message in dispatcher.messages]


# --- triage follow-up -------------------------------------------------------------------------
def red_flag_message(classified_intent, confidence=0.9):
    return {
        "text": "I get tingling in my left leg after sex, why does my back hurt?",
        "intent": {"name": "red_flag_booking", "confidence": 1.0},
        "entities": [],
        "triage": {
            "level": "BOOKING",
            "rule": "numbness_tingling_or_weakness_in_a_leg",
            "matched": ["tingling", "left leg"],
            "classified_intent": {"name": classified_intent, "confidence": confidence},
        },
        "response_selector": {
            "faq": {"response": {"utter_action": "utter_faq/back_pain_after_sex_causes", "confidence": 0.9}}
        },
    }


async def test_triage_followup_records_the_red_flag_and_answers_the_question(store):
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(latest_message=red_flag_message("faq"), events=[{"event": "user", "timestamp": 1700000000.5}])
    events = await triage_actions.ActionTriageFollowup().run(dispatcher, tracker, DOMAIN)

    assert responses(dispatcher) == ["utter_faq/back_pain_after_sex_causes"]
    assert SlotSet("triage_level", "BOOKING") in events
    assert SlotSet("booking_reason", "I get tingling in my left leg after sex, why does my back hurt? [red flag, booking]") in events
    [recorded] = store.list_triage_events()
    assert (recorded["conversation_id"], recorded["level"], recorded["message_timestamp"]) == ("patient-1", "BOOKING", 1700000000.5)
    assert "left leg" in recorded["matched"]


async def test_no_answer_after_an_emergency_unless_the_patient_asked_a_question(store):
    message = dict(red_flag_message("faq"), text="I can't feel anything between my legs and I can't pee")
    message["triage"] = dict(message["triage"], level="EMERGENCY")
    dispatcher = CollectingDispatcher()
    await triage_actions.ActionTriageFollowup().run(dispatcher, make_tracker(latest_message=message), DOMAIN)
    assert dispatcher.messages == []
    assert len(store.list_triage_events()) == 1


async def test_an_emergency_with_a_question_gets_only_a_pointer_not_the_article(store):
    # Issue 10 item 2: nothing may dilute "call 911 now"; the answer comes when the patient asks again.
    message = dict(red_flag_message("faq"), text="my back hurts and I can't feel my bum, why does my back hurt after sex?")
    message["triage"] = dict(message["triage"], level="EMERGENCY")
    dispatcher = CollectingDispatcher()
    await triage_actions.ActionTriageFollowup().run(dispatcher, make_tracker(latest_message=message), DOMAIN)
    assert responses(dispatcher) == ["utter_emergency_questions_later"]


@pytest.mark.parametrize("rules, advice", [
    (["bleeding_after_sex_or_menopause"], ["utter_see_doctor_bleeding"]),
    (["history_of_cancer", "unexplained_weight_loss"], ["utter_see_doctor_cancer_history", "utter_see_doctor_weight_loss"]),
    (["bleeding_after_sex_or_menopause", "bleeding_in_a_message_about_menopause"], ["utter_see_doctor_bleeding"]),
    (["pain_that_persists"], []),
])
async def test_booking_findings_that_need_a_doctor_say_so(store, rules, advice):
    message = dict(red_flag_message("greet"), text="I've been bleeding after sex for a month")
    message["triage"] = dict(message["triage"], rules=rules, rule=rules[0])
    dispatcher = CollectingDispatcher()
    await triage_actions.ActionTriageFollowup().run(dispatcher, make_tracker(latest_message=message), DOMAIN)
    assert responses(dispatcher) == advice


async def test_a_confident_answer_follows_a_booking_level_statement(store):
    message = dict(red_flag_message("faq"), text="sex has hurt ever since I had my baby")
    dispatcher = CollectingDispatcher()
    await triage_actions.ActionTriageFollowup().run(dispatcher, make_tracker(latest_message=message), DOMAIN)
    assert responses(dispatcher) == ["utter_faq/back_pain_after_sex_causes"]


@pytest.mark.parametrize("intent, confidence", [("greet", 0.9), ("faq", 0.2), (None, 0.0)])
async def test_triage_followup_gives_no_answer_when_no_question_was_understood(store, intent, confidence):
    dispatcher = CollectingDispatcher()
    await triage_actions.ActionTriageFollowup().run(dispatcher, make_tracker(latest_message=red_flag_message(intent, confidence)), DOMAIN)
    assert dispatcher.messages == []
    assert len(store.list_triage_events()) == 1


async def test_triage_followup_still_works_when_the_database_is_unavailable(monkeypatch, caplog):
    def broken_store():
        raise RuntimeError("database is down")

    monkeypatch.setattr(triage_actions, "default_store", broken_store)
    dispatcher = CollectingDispatcher()
    phone_id = "whatsapp:+15550104477"
    tracker = make_tracker(latest_message=red_flag_message("faq"), sender=phone_id)
    events = await triage_actions.ActionTriageFollowup().run(dispatcher, tracker, DOMAIN)
    assert responses(dispatcher) == ["utter_faq/back_pain_after_sex_causes"]
    assert SlotSet("triage_level", "BOOKING") in events
    # the failure is logged under the conversation's pseudonym, never the patient's phone number
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Could not record triage event for conv-" in logged
    assert "5550104477" not in logged


# --- booking form validation -------------------------------------------------------------------
def form_tracker(slot, value, intent="inform", entities=None, slots=None):
    return make_tracker(
        slots=dict(slots or {}, requested_slot=slot),
        latest_message={"intent": {"name": intent}, "entities": entities or [], "text": str(value)},
        events=[{"event": "user", "text": str(value)}, {"event": "slot", "name": slot, "value": value}],
        active_loop={"name": "booking_form"},
    )


@pytest.mark.parametrize(
    "slot, typed, expected, reply",
    [
        ("booking_contact", "call me on 415-555-0199 please", "415-555-0199", None),
        ("booking_contact", "Jo@Example.com", "jo@example.com", None),
        ("booking_contact", "tomorrow", None, "utter_invalid_contact"),
        ("booking_name", "my name is <b>Maria</b>", "Maria", None),
        ("booking_name", "555 1234", None, "utter_invalid_name"),
        ("booking_visit_type", "video would be easier", "virtual", None),
        ("booking_visit_type", "I'll come to the clinic", "in_person", None),
        ("booking_visit_type", "whatever", None, "utter_invalid_visit_type"),
        ("booking_times", "<script>x</script> tuesday mornings", "x tuesday mornings", None),
    ],
)
async def test_form_validation(slot, typed, expected, reply):
    dispatcher = CollectingDispatcher()
    events = await booking_actions.ValidateBookingForm().run(dispatcher, form_tracker(slot, typed), DOMAIN)
    assert SlotSet(slot, expected) in events
    assert responses(dispatcher) == ([reply] if reply else [])


async def test_refusing_consent_completes_the_form_without_a_booking(store):
    dispatcher = CollectingDispatcher()
    events = await booking_actions.ValidateBookingForm().run(dispatcher, form_tracker("booking_consent", False, intent="deny"), DOMAIN)
    assert SlotSet("booking_confirmed", booking_actions.NO_CONSENT) in events
    assert responses(dispatcher) == ["utter_booking_no_consent"]


async def test_choosing_a_field_to_change_empties_it_so_the_form_asks_again():
    tracker = form_tracker(
        "booking_confirmed", "change", intent="correct_booking",
        entities=[{"entity": "booking_field", "value": "booking_contact"}],
    )
    events = await booking_actions.ValidateBookingForm().run(CollectingDispatcher(), tracker, DOMAIN)
    assert SlotSet("booking_contact", None) in events
    assert SlotSet("booking_confirmed", None) in events


FILLED = {
    "booking_name": "Maria",
    "booking_contact": "555-123-4567",
    "booking_visit_type": "virtual",
    "booking_times": "weekday mornings",
    "booking_consent": True,
    "booking_reason": "Red flag (booking): tingling, left leg",
    "triage_level": "BOOKING",
}


async def test_read_back_lists_every_detail_before_sending():
    dispatcher = CollectingDispatcher()
    await booking_actions.ActionAskBookingConfirmed().run(dispatcher, make_tracker(slots=FILLED), DOMAIN)
    [message] = dispatcher.messages
    assert message["response"] == "utter_booking_read_back"
    assert (message["booking_name"], message["booking_contact"], message["visit_label"]) == (
        "Maria", "555-123-4567", "virtual (video or phone)")
    assert message["booking_reason"] == FILLED["booking_reason"]


async def test_after_a_no_the_patient_is_asked_what_to_change():
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(slots=FILLED, latest_message={"intent": {"name": "deny"}, "entities": [], "text": "no"})
    await booking_actions.ActionAskBookingConfirmed().run(dispatcher, tracker, DOMAIN)
    assert responses(dispatcher) == ["utter_ask_booking_field_to_change"]


FORM_STARTED = [{"event": "active_loop", "name": "booking_form", "timestamp": 1700000100.0}]


async def test_submit_stores_one_booking_and_gives_its_reference(store):
    tracker = make_tracker(slots=dict(FILLED, booking_confirmed="yes"), events=FORM_STARTED)
    dispatcher = CollectingDispatcher()
    events = await booking_actions.ActionSubmitBooking().run(dispatcher, tracker, DOMAIN)

    [message] = dispatcher.messages
    assert message["response"] == "utter_booking_stored"
    assert message["reference"] == booking_reference("patient-1:1700000100.0")
    [row] = store.list_bookings()
    assert (row["name"], row["contact_kind"], row["visit_type"], row["triage_level"]) == ("Maria", "phone", "virtual", "BOOKING")
    assert row["reason"] == FILLED["booking_reason"]
    assert SlotSet("booking_name", None) in events  # ready for another booking

    # The same confirmation arriving twice (double tap, retry) makes no second booking.
    await booking_actions.ActionSubmitBooking().run(CollectingDispatcher(), tracker, DOMAIN)
    assert len(store.list_bookings()) == 1


async def test_submit_without_consent_stores_nothing(store):
    tracker = make_tracker(slots=dict(FILLED, booking_consent=False, booking_confirmed=booking_actions.NO_CONSENT), events=FORM_STARTED)
    dispatcher = CollectingDispatcher()
    await booking_actions.ActionSubmitBooking().run(dispatcher, tracker, DOMAIN)
    assert dispatcher.messages == []
    assert store.list_bookings() == []


async def test_submit_while_the_database_is_down_tells_the_patient_honestly(tmp_path, monkeypatch):
    unreachable = Store("postgresql://postgres@127.0.0.1:1/test", tmp_path / "outbox")
    monkeypatch.setattr(booking_actions, "default_store", lambda: unreachable)
    tracker = make_tracker(slots=dict(FILLED, booking_confirmed="yes"), events=FORM_STARTED)
    dispatcher = CollectingDispatcher()
    await booking_actions.ActionSubmitBooking().run(dispatcher, tracker, DOMAIN)
    [message] = dispatcher.messages
    assert message["response"] == "utter_booking_queued"
    assert len(unreachable.pending_outbox()) == 1


# --- handoff and feedback ----------------------------------------------------------------------
async def test_handoff_flags_the_conversation_and_says_how_to_reach_the_clinic(store):
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(latest_message={"intent": {"name": "ask_human"}, "entities": [], "text": "can I talk to a person"})
    await conversation_actions.ActionHandoff().run(dispatcher, tracker, DOMAIN)
    [message] = dispatcher.messages
    assert message["response"] == "utter_handoff"
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT conversation_id, note, status FROM handoffs").all()
    assert [tuple(r) for r in rows] == [("patient-1", "can I talk to a person", "new")]


@pytest.mark.parametrize("intent, helpful, reply", [
    ("feedback_helpful", True, "utter_feedback_thanks"),
    ("feedback_not_helpful", False, "utter_feedback_sorry"),
    ("affirm", True, "utter_feedback_thanks"),  # a typed yes to "Did that answer your question?"
    ("deny", False, "utter_feedback_sorry"),
])
async def test_feedback_is_stored_against_the_topic_just_answered(store, intent, helpful, reply):
    events = [
        {"event": "bot", "text": "…", "metadata": {"utter_action": "utter_faq/vaginismus"}},
        {"event": "bot", "text": "Did that answer your question?", "metadata": {"utter_action": "utter_ask_feedback"}},
    ]
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(latest_message={"intent": {"name": intent}, "entities": [], "text": "/" + intent}, events=events)
    await conversation_actions.ActionRecordFeedback().run(dispatcher, tracker, DOMAIN)
    assert responses(dispatcher) == [reply]
    assert store.feedback_by_topic() == [{"topic": "vaginismus", "total": 1, "helpful": int(helpful)}]


@pytest.mark.parametrize("text, asks", [
    ("why does my back hurt after sex", True),
    ("I get tingling in my left leg after sex, is that normal", True),
    ("I can't pee and my back hurts. Any advice", True),
    ("I can't feel anything between my legs and I can't pee", False),
    ("sex hurts since my baby", False),
])
def test_asks_a_question(text, asks):
    from clinicbot.booking import asks_a_question

    assert asks_a_question(text) is asks
