"""The console's queries on SQLite, over real conversations with the trained bot."""
from __future__ import annotations

from query_checks import check_feedback_and_insight, check_filters, check_flags, check_queue, check_reference_search


def test_every_conversation_carries_the_right_flags(console_store, conversations):
    check_flags(console_store, conversations)


def test_filters_return_exactly_the_matching_conversations(console_store, conversations):
    check_filters(console_store, conversations)


def test_search_finds_a_conversation_by_booking_reference(console_store, conversations):
    check_reference_search(console_store, conversations)


def test_queue_has_bookings_red_flags_and_handoffs_with_emergencies_on_top(console_store, conversations):
    check_queue(console_store, conversations)


def test_feedback_per_topic_and_insight_counts(console_store, conversations):
    check_feedback_and_insight(console_store, conversations)


def test_transcript_events_and_records(console_store, conversations):
    events = console_store.conversation_events(conversations["booking"])
    users = [e for e in events if e["type_name"] == "user"]
    assert users[0]["data"]["parse_data"]["triage"]["level"] == "BOOKING"
    records = console_store.conversation_records(conversations["booking"])
    assert len(records["booking"]) == 1 and records["booking"][0]["name"] == "Jane Roe"
    assert records["triage"][0]["matched"]  # the words behind the red flag, parsed from JSON
