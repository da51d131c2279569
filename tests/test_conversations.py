"""End to end through the trained model: `rasa run` + action server, talking over the REST channel."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).parent
FAQ_QUESTIONS = yaml.safe_load((HERE / "e2e" / "faq_questions.yml").read_text(encoding="utf-8"))
OUT_OF_SCOPE = yaml.safe_load((HERE / "e2e" / "out_of_scope_questions.yml").read_text(encoding="utf-8"))
SOURCES = [
    '"Back and Hip Problems That Can Make Sex Hurt"',
    '"Painful Intercourse and Vaginal Pain"',
    '"Lower Back Pain After Sex: Common Causes and Solutions"',
    '"We\'ve Got Your Back!"',
]
TRAINING_TEXT = "\n".join(p.read_text(encoding="utf-8").lower() for p in (HERE.parent / "data" / "nlu").glob("*.yml"))


def test_e2e_questions_are_not_training_examples():
    assert len(FAQ_QUESTIONS) >= 40
    copied = [q["question"] for q in FAQ_QUESTIONS if f"- {q['question'].lower()}\n" in TRAINING_TEXT]
    assert copied == []


# Retraining moves a few borderline paraphrases across the unsure-answer threshold, so these two tests
# hold the whole set to a bar rather than each question to perfection; a real regression (a topic lost,
# the fallback broken) fails them. The held-out figures are in docs/nlu-evaluation.md.
FAQ_BAR = 0.92
OUT_OF_SCOPE_BAR = 0.85


def answer_problem(texts, case):
    answer = next((t for t in texts if "Source:" in t), "")
    if not answer:
        return f"no article answer: {texts[0][:60]!r}"
    missing = [p for p in case["must_contain"] if p.lower() not in answer.lower()]
    if missing:
        return f"wrong answer (missing {missing}): {answer[:60]!r}"
    if not any(source in answer for source in SOURCES):
        return "answer names no source article"
    if texts[-1] not in ("Did that answer your question?", "Would you like to book an appointment with the clinic?"):
        return f"unexpected last message {texts[-1][:40]!r}"
    return None


def test_patient_questions_get_the_right_answer(new_chat):
    problems = {}
    for case in FAQ_QUESTIONS:
        problem = answer_problem(new_chat().texts(case["question"]), case)
        if problem:
            problems[case["question"]] = problem
    answered = 1 - len(problems) / len(FAQ_QUESTIONS)
    print(f"{len(FAQ_QUESTIONS) - len(problems)}/{len(FAQ_QUESTIONS)} answered correctly; problems: {problems}")
    assert answered >= FAQ_BAR, problems
    # Misses should mostly be an honest "not sure", rarely a wrong article.
    assert len([p for p in problems.values() if p.startswith("wrong answer")]) <= 2, problems
    # Every topic is answered correctly at least once.
    topics = {case["topic"] for case in FAQ_QUESTIONS}
    failed_topics = {case["topic"] for case in FAQ_QUESTIONS if case["question"] in problems}
    assert all(any(c["topic"] == t and c["question"] not in problems for c in FAQ_QUESTIONS) for t in failed_topics), problems
    assert len(topics) == 25


def test_out_of_scope_gets_an_honest_reply_not_an_answer(new_chat):
    # An honest "outside what I can help with" / "not sure I understood", or what the bot can help with.
    honest = ("outside what I can help with", "not sure I understood", "I can answer questions about")
    answered = {}
    for question in OUT_OF_SCOPE:
        texts = new_chat().texts(question)
        assert texts, "no reply"
        if not any(phrase in t for t in texts for phrase in honest):
            answered[question] = texts[0][:60]
    print(f"off-topic messages given an article answer: {answered}")
    assert 1 - len(answered) / len(OUT_OF_SCOPE) >= OUT_OF_SCOPE_BAR, answered


def test_done_when_back_pain_question_names_seed_002(chat):
    [answer, feedback] = chat.texts("why does my back hurt after sex")
    assert "herniated disc" in answer
    assert 'Source: "Lower Back Pain After Sex: Common Causes and Solutions"' in answer
    assert feedback == "Did that answer your question?"


DISCLAIMER = "it is not a diagnosis or medical advice. In an emergency, call 911."


def test_greeting_carries_the_disclaimer_and_topic_buttons(chat):
    [greeting] = chat.say("hi there")
    assert greeting["text"].endswith(DISCLAIMER + ")")
    assert [b["title"] for b in greeting["buttons"]][:2] == ["Back pain after sex", "Painful sex"]


def test_a_conversation_that_starts_with_a_question_gets_the_disclaimer_once_after_the_answer(chat):
    # Issue 10 item 9: on every channel at the start of a conversation, not only after a greeting.
    [answer, feedback] = chat.texts("what is vaginismus")
    assert answer.index('Source: "') < answer.index(DISCLAIMER)
    assert DISCLAIMER not in feedback
    assert not any(DISCLAIMER in t for t in chat.texts("hi") + chat.texts("what is vulvodynia"))


@pytest.mark.parametrize("first", ["I can't feel anything between my legs and I can't pee",
                                   "I keep thinking about killing myself"])
def test_no_disclaimer_follows_an_emergency_instruction_or_a_crisis_line(new_chat, first):
    chat = new_chat()
    texts = chat.texts(first) + chat.texts("what is vaginismus")
    assert "911" in texts[0]
    assert not any("not a diagnosis" in t for t in texts)


def test_topic_button_payload_is_answered(chat):
    [greeting] = chat.say("hello")
    payload = greeting["buttons"][1]["payload"]
    answer = chat.texts(payload)[0]
    assert 'Source: "Painful Intercourse and Vaginal Pain"' in answer


@pytest.mark.parametrize(
    "message, expected",
    [
        ("", "Please type your question"),
        ("    ", "Please type your question"),
        ("<script>alert('hi')</script>", None),
        ("😢😢😢", None),
        ("¿Por qué me duele la espalda después del sexo?", "not sure I understood"),
        ("why does my back hurt after sex " + "really " * 710, None),
    ],
    ids=["empty", "whitespace", "markup", "emoji", "spanish", "5000-chars"],
)
def test_bad_input_gets_a_kind_reply(chat, message, expected):
    replies = chat.say(message)
    texts = [r.get("text", "") for r in replies]
    assert texts, "the patient got no reply at all"
    assert not any("<script" in t.lower() for t in texts)
    if expected:
        assert any(expected in t for t in texts)
    # and the conversation goes on normally afterwards
    assert any("Source:" in t for t in chat.texts("what is vaginismus"))


# --- triage through the bot ----------------------------------------------------------------------
def test_done_when_emergency_instruction_comes_first(chat, stack_store):
    texts = chat.texts("I can't feel anything between my legs and I can't pee")
    assert "call 911" in texts[0]
    assert not any("book" in t.lower() for t in texts)
    events = [e for e in stack_store.list_triage_events() if e["conversation_id"] == chat.conversation_id]
    assert [e["level"] for e in events] == ["EMERGENCY"]


def test_done_when_negated_symptoms_get_the_normal_answer(chat, stack_store):
    texts = chat.texts("no numbness or tingling, just a sore back after sex")
    # No triage advice (an article answer may itself name the 911 signs, as the when-to-see-a-doctor one does).
    advice = ("can be a sign of a medical emergency", "checked by a doctor today", "should be checked by a clinician")
    assert not any(phrase in t for t in texts for phrase in advice)
    assert any("Source:" in t for t in texts)
    assert not [e for e in stack_store.list_triage_events() if e["conversation_id"] == chat.conversation_id]


def test_red_flag_with_a_question_gets_the_triage_message_then_the_answer(chat):
    texts = chat.texts("I'm pregnant and I've had some bleeding, what treatments are not used in pregnancy?")
    assert "checked by a doctor today" in texts[0]
    assert any("Source:" in t and "pregnan" in t.lower() for t in texts[1:])
    # Same-day care first; a booking only as a later follow-up (issue 10 item 4).
    assert texts[-1] == "After you've been seen today, I can book a follow-up visit with the clinic if you'd like."


def test_an_emergency_with_a_question_gets_only_the_instruction_and_the_answer_when_asked_again(chat):
    # Issue 10 item 2: nothing may dilute "call 911 now".
    texts = chat.texts("my back is agony and I can't feel my bum on the toilet seat, why does my back hurt after sex?")
    assert "call 911" in texts[0]
    assert [t for t in texts[1:] if t] == ["When you're safe, I can answer your questions. Just ask me again."]
    again = chat.texts("why does my back hurt after sex?")
    assert "911" in again[0]
    assert any('Source: "Lower Back Pain After Sex' in t for t in again[1:])


def test_booking_level_bleeding_after_the_menopause_also_says_see_your_doctor(chat):
    texts = chat.texts("I'm 64 and I've had some bleeding after sex this month")
    assert "checked by a clinician" in texts[0] and "911" in texts[0]
    assert any("checked by your doctor or gynecologist" in t for t in texts)


def test_done_when_tingling_leads_to_a_stored_booking(chat, stack_store):
    replies = chat.say("I get tingling in my left leg after sex")
    assert "checked by a clinician" in replies[0]["text"]
    offer = replies[-1]
    assert [b["title"] for b in offer["buttons"]] == ["Book in person", "Book a virtual visit", "Not now"]

    assert "What name" in chat.texts(offer["buttons"][0]["payload"])[0]
    assert "How can the clinic reach you" in chat.texts("Maria Lopez")[0]
    assert "doesn't look like" in chat.texts("tomorrow")[0]
    assert "Which days and times" in chat.texts("415-555-0199")[-1]  # in person was chosen by the button
    assert "May the clinic contact you" in chat.texts("weekday mornings")[0]
    read_back = chat.texts("/affirm")[0]
    assert "Maria Lopez" in read_back and "415-555-0199" in read_back and "in person" in read_back
    assert "tingling" in read_back  # reason prefilled from the red flag
    done = chat.texts("/affirm")[0]
    assert "reference number is PH-" in done

    rows = [r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id]
    assert len(rows) == 1
    assert (rows[0]["name"], rows[0]["contact"], rows[0]["visit_type"], rows[0]["triage_level"]) == (
        "Maria Lopez", "415-555-0199", "in_person", "BOOKING")
    assert rows[0]["reference"] in done

    # A second "yes" after the booking is sent makes no second booking.
    chat.texts("/affirm")
    assert len([r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id]) == 1


def fill_virtual_booking_and_read_back(chat) -> str:
    """From the form's first question to the read-back: name, e-mail, a virtual visit, mornings."""
    for answer in ("Ana Silva", "ana@example.org", '/inform{"visit_type": "virtual"}', "mornings"):
        chat.texts(answer)
    return chat.texts("/affirm")[0]


def test_the_booking_reason_is_what_the_patient_wrote_not_the_article_topic(new_chat, stack_store):
    # Issue 12 item 4: not "Question about virtual sessions"; the patient's own first description.
    chat = new_chat()
    chat.texts("hello")
    chat.texts("sex has hurt ever since I had my baby, can physical therapy help with that?")
    chat.texts("do you do virtual sessions")
    assert "What name" in chat.texts("/book_appointment")[0]
    read_back = fill_virtual_booking_and_read_back(chat)
    # persistent painful sex is also a booking-level red flag: the words, then what the triage made of them
    reason = "sex has hurt ever since I had my baby, can physical therapy help with that? [red flag, booking]"
    assert f"Reason: {reason}" in read_back
    chat.texts("/affirm")
    [row] = [r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id]
    assert row["reason"] == reason


def test_a_direct_booking_takes_the_reason_from_the_first_question_not_the_form_answers(new_chat):
    chat = new_chat()
    chat.texts("do you do virtual sessions")
    assert "What name" in chat.texts("/book_appointment")[0]
    assert "Reason: do you do virtual sessions\n" in fill_virtual_booking_and_read_back(chat)


def test_booking_form_answers_a_question_midway_and_can_correct_and_stop(chat, stack_store):
    assert "What name" in chat.texts("can I schedule a virtual session?")[0]
    texts = chat.texts("what is vaginismus")
    assert any("Source:" in t for t in texts)
    assert "What name" in texts[-1]  # the form resumes
    chat.texts("Sam")
    chat.texts("sam@example.org")
    chat.texts('/inform{"visit_type": "virtual"}')
    chat.texts("evenings")
    read_back = chat.texts("/affirm")[0]
    assert "sam@example.org" in read_back
    assert "What would you like to change" in chat.texts("/deny")[0]
    assert "How can the clinic reach you" in chat.texts('/correct_booking{"booking_field": "booking_contact"}')[0]
    read_back = chat.texts("sam.new@example.org")[0]
    assert "sam.new@example.org" in read_back
    assert "stopped the booking" in chat.texts("never mind")[0]
    assert [r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id] == []


def test_saying_they_will_phone_the_clinic_when_asked_for_contact_details_stops_the_form(chat, stack_store):
    assert "What name" in chat.texts("can I book an appointment?")[0]
    assert "How can the clinic reach you" in " ".join(chat.texts("Robin"))

    reply = " ".join(chat.texts("actually I'll just call the clinic myself"))

    assert "stopped the booking" in reply and "phone number or an e-mail" not in reply
    assert [r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id] == []


def test_asking_for_a_person_flags_the_conversation(chat, stack_store):
    texts = chat.texts("I want to talk to a real person")
    assert "flagged this conversation" in texts[0]
    with stack_store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT conversation_id FROM handoffs").all()
    assert (chat.conversation_id,) in [tuple(r) for r in rows]


def test_asking_for_a_person_mid_booking_gives_the_contact_then_the_choice_to_go_on(new_chat, stack_store):
    # Issue 12 item 4: not the contact details and straight back to "What name".
    chat = new_chat()
    assert "What name" in chat.texts("I'd like to book an appointment")[0]
    texts = chat.texts("Lee Chan")
    assert "How can the clinic reach you" in texts[0]
    texts = chat.texts("actually can I just speak to a real person")
    assert "flagged this conversation" in texts[0]
    assert texts[-1].startswith("Would you still like me to finish your booking request here?")
    assert not any("How can the clinic reach you" in t or "What name" in t for t in texts)
    # yes: the form goes on where it was (the name is kept)
    assert "How can the clinic reach you" in chat.texts("yes please")[0]

    chat = new_chat()
    chat.texts("I'd like to book an appointment")
    chat.texts("Lee Chan")
    chat.texts("can I talk to someone at the clinic")
    assert "stopped the booking" in chat.texts("no")[0]
    assert "What name" not in " ".join(chat.texts("what is vaginismus"))
    assert [r for r in stack_store.list_bookings() if r["conversation_id"] == chat.conversation_id] == []


def test_emergency_advice_and_answers_survive_an_action_server_that_is_down(stack, chat):
    stack.stop_process("actions")
    try:
        texts = chat.texts("I can't feel anything between my legs and I can't pee")
        assert "call 911" in texts[0]
        answer = chat.texts("what is vaginismus")
        assert any("Source:" in t for t in answer)
    finally:
        stack.start_process("actions")
    # and the bot is whole again afterwards: the emergency instruction first (it still stands), then the handoff
    texts = chat.texts("can I talk to a real person")
    assert "911" in texts[0]
    assert any("flagged this conversation" in t for t in texts[1:])


def test_a_booking_queued_while_the_database_was_down_is_written_when_the_action_server_starts(stack, stack_env, stack_store):
    """The outbox is flushed at start and on a schedule, not only when the next patient books."""
    from clinicbot.storage import Store

    key = f"queued-{time.time_ns()}:1.0"
    queued = Store(stack_env["DATABASE_URL"], Path(stack_env["BOOKING_OUTBOX_DIR"]))
    row = queued._booking_row({
        "idempotency_key": key, "conversation_id": key.split(":")[0], "name": "Queued Patient", "contact": "555-010-0199",
        "contact_kind": "phone", "visit_type": "virtual", "consent": True,
    })
    queued._write_outbox(row)

    stack.stop_process("actions")
    stack.start_process("actions")

    deadline = time.time() + 30
    while time.time() < deadline and not [b for b in stack_store.list_bookings() if b["reference"] == row["reference"]]:
        time.sleep(0.5)
    [stored] = [b for b in stack_store.list_bookings() if b["reference"] == row["reference"]]
    assert stored["name"] == "Queued Patient"
    assert queued.pending_outbox() == []


def test_off_topic_reply_offers_the_clinic_and_the_button_gives_its_contact(new_chat):
    # Clinic admin questions (insurance, prices, parking) are off-topic for the bot but not for the patient.
    from clinicbot.settings import load_settings

    patient = new_chat()
    replies = patient.say("what's the capital of peru")
    buttons = [button for message in replies for button in message.get("buttons", [])]
    talk = [button for button in buttons if button["title"] == "Talk to the clinic"]
    assert talk, replies
    contact = " ".join(patient.texts(talk[0]["payload"]))
    assert load_settings().clinic.phone in contact


# --- triage across the conversation (clinicbot/triage_policy.py) -------------------------------------------------
def test_a_sign_in_a_later_message_gets_the_emergency_instruction_at_that_turn(chat, stack_env, stack_store):
    first = chat.texts("my lower back has been really sore since the weekend, can I still do kegels?")
    assert not any("call 911 now" in t.lower() for t in first)  # no emergency instruction yet
    second = chat.texts("oh and something weird, I can't feel the toilet paper when I wipe")
    assert "call 911" in second[0]
    # The follow-up queue lists it as an emergency, with the words from both messages.
    events = [e for e in stack_store.list_triage_events() if e["conversation_id"] == chat.conversation_id]
    assert [e["level"] for e in events] == ["EMERGENCY"]
    matched = json.loads(events[0]["matched"])
    assert any("back" in words for words in matched) and any("wipe" in words for words in matched)
    # What staff see: the conversation's triage, with the turn each finding came from, in the tracker store.
    from clinicbot.storage import ConsoleStore

    slots = [e["data"]["value"] for e in ConsoleStore(stack_env["DATABASE_URL"]).conversation_events(chat.conversation_id, ["slot"])
             if e["action_name"] == "triage_conversation"]
    assert slots[-1]["level"] == "EMERGENCY"
    turns = {f["turn"] for f in slots[-1]["findings"] if f["status"] == "affirmed" and f["name"] in slots[-1]["used"]}
    assert turns == {1, 2}


def test_after_the_emergency_instruction_a_booking_request_gets_it_repeated_first(chat, stack_store):
    assert "call 911" in chat.texts("my back is agony and I wet myself without even noticing")[0]
    assert "911" in chat.texts("it's probably nothing, I'll see how it goes")[0]
    texts = chat.texts("I'd rather not go to hospital, can I just book an appointment for next week?")
    assert "911" in texts[0]
    assert any("name" in t.lower() for t in texts[1:])  # the booking they asked for still starts


def test_a_suggested_sign_gets_one_safety_question_and_a_typed_yes_gets_the_emergency_instruction(new_chat):
    chat = new_chat()
    texts = chat.texts("my back has been aching since yesterday and my legs feel kind of funny")
    assert not any("medical emergency" in t or "call 911 now" in t.lower() for t in texts)
    assert any("quick safety question" in t for t in texts)
    assert "call 911" in chat.texts("yes")[0]

    chat = new_chat()
    chat.texts("my back has been aching since yesterday and my legs feel kind of funny")
    reply = chat.texts("no")
    assert "reassuring" in reply[0] and not any("call 911 now" in t.lower() for t in reply)


def test_a_self_harm_disclosure_gets_warmth_the_helpline_and_a_staff_flag(chat, stack_store):
    texts = chat.texts("the pain is so bad some nights I just want to end my life")
    assert "988" in texts[0] and "glad you told me" in texts[0]
    assert not any("outside what I can help with" in t for t in texts)
    with stack_store.engine.connect() as connection:
        notes = connection.exec_driver_sql("SELECT note FROM handoffs WHERE conversation_id = ?", (chat.conversation_id,)).scalars().all()
    assert notes == ["Safeguarding: self harm"]


def test_after_a_disclosure_of_abuse_no_answer_suggests_involving_the_partner(new_chat):
    question = "how can I stop my lower back hurting after sex?"
    control = " ".join(new_chat().texts(question))
    assert "partner" in control  # the ordinary answer starts with talking to your partner

    chat = new_chat()
    assert "Domestic Violence Hotline" in " ".join(chat.texts("my husband hits me when he's angry"))
    answer = " ".join(chat.texts(question))
    assert "Source:" in answer and "partner" not in answer.lower()


@pytest.mark.parametrize("typed, helpful", [("no", False), ("that didn't help", False), ("yes", True)])
def test_typed_feedback_counts_like_the_buttons(new_chat, stack_store, typed, helpful):
    chat = new_chat()
    assert any("Did that answer your question?" in t for t in chat.texts("what is vaginismus"))

    reply = " ".join(chat.texts(typed))

    assert ("Glad it helped" if helpful else "Sorry it didn't help") in reply
    with stack_store.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT topic, helpful FROM feedback WHERE conversation_id = ?", (chat.conversation_id,)).all()
    assert [tuple(r) for r in rows] == [("vaginismus", helpful)]


def test_a_denied_thought_gets_no_safeguarding_reply(chat):
    texts = chat.texts("I'm not suicidal or anything, I just want to know why sex hurts")
    assert not any("988" in t for t in texts)


def test_the_database_and_logs_are_readable_by_their_owner_only(chat, stack, stack_dir):
    # Issue 11 item 6: patient data is not world- or group-readable, whatever the shell's umask.
    chat.texts("hello")
    private = [stack_dir / "clinic.db", *stack.log_dir.glob("*.log")]
    assert len(private) >= 3
    loose = {str(path): oct(path.stat().st_mode & 0o777) for path in private if path.stat().st_mode & 0o077}
    assert loose == {}
    assert stack.log_dir.stat().st_mode & 0o077 == 0
