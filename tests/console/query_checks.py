"""Checks of the console's queries, shared by the SQLite tests and the PostgreSQL tests (same data, same answers)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Dict, Set

from clinicbot.storage import ConsoleStore, ConversationFilter
from scripted_patients import EXPECTED_FLAGS

ALL = 100000


def found(store: ConsoleStore, senders: Dict[str, str], **criteria) -> Set[str]:
    """Labels of the scripted conversations that the list returns for these criteria."""
    rows, total = store.list_conversations(ConversationFilter(limit=ALL, **criteria))
    assert total == len(rows)
    by_sender = {sender: label for label, sender in senders.items()}
    return {by_sender[row["conversation_id"]] for row in rows if row["conversation_id"] in by_sender}


def check_flags(store: ConsoleStore, senders: Dict[str, str]) -> None:
    rows, _ = store.list_conversations(ConversationFilter(limit=ALL))
    by_id = {row["conversation_id"]: row for row in rows}
    assert set(senders.values()) <= set(by_id), "every scripted conversation is listed"
    for label, expected in EXPECTED_FLAGS.items():
        row = by_id[senders[label]]
        actual = {
            "red_flag_level": row["red_flag_level"],
            "booking": row["bookings"] > 0,
            "negative_feedback": row["negative_feedback"] > 0,
            "handoff": row["handoffs"] > 0,
            "fallback": row["fallbacks"] > 0,
        }
        for flag, value in expected.items():
            assert actual[flag] == value, f"{label}: {flag} is {actual[flag]}, expected {value}"
        assert row["channel"] == "rest"
        assert row["started_at"] <= row["last_activity_at"]
    assert by_id[senders["booking"]]["turns"] == 8  # every patient message, typed or clicked


def check_filters(store: ConsoleStore, senders: Dict[str, str]) -> None:
    assert found(store, senders, red_flag=True) == {"booking", "emergency", "emergency_across_turns", "urgent"}
    assert found(store, senders, red_flag_level="URGENT") == {"emergency", "emergency_across_turns", "urgent"}
    assert found(store, senders, red_flag_level="EMERGENCY") == {"emergency", "emergency_across_turns"}
    assert found(store, senders, booking=True) == {"booking"}
    assert found(store, senders, handoff=True) == {"handoff"}
    assert found(store, senders, negative_feedback=True) == {"negative_feedback"}
    fallback = found(store, senders, fallback=True)
    assert "fallback" in fallback and not fallback & {"helpful", "booking", "emergency", "urgent", "handoff"}
    # Several flags: all of them.
    assert found(store, senders, red_flag=True, booking=True) == {"booking"}
    assert found(store, senders, handoff=True, booking=True) == set()
    # Channel.
    assert found(store, senders, channel="rest") == set(senders)
    assert found(store, senders, channel="socketio") == set()
    # Date range (activity overlapping [start, end)).
    now = datetime.now().astimezone()
    assert found(store, senders, start=now - timedelta(days=1), end=now + timedelta(days=1)) == set(senders)
    assert found(store, senders, end=now - timedelta(days=1)) == set()
    assert found(store, senders, start=now + timedelta(days=1)) == set()
    # Text: what the patient (or the bot) wrote, case-insensitive; LIKE wildcards are literal.
    assert found(store, senders, text="FEVER") == {"urgent"}
    assert found(store, senders, text="<script>") == {"markup"}
    assert found(store, senders, text="%_%_%") == set()  # LIKE wildcards are escaped, not a match-all
    assert found(store, senders, text="can't pee") == {"emergency"}


def check_reference_search(store: ConsoleStore, senders: Dict[str, str]) -> None:
    booking = [b for b in store.list_bookings() if b["conversation_id"] == senders["booking"]]
    assert len(booking) == 1
    assert found(store, senders, text=booking[0]["reference"].lower()) == {"booking"}


def check_queue(store: ConsoleStore, senders: Dict[str, str]) -> None:
    items = store.queue_items(statuses=None)
    ours = [item for item in items if item["conversation_id"] in set(senders.values())]
    kinds = {(item["kind"], item["conversation_id"]) for item in ours}
    assert ("booking", senders["booking"]) in kinds
    assert ("triage", senders["emergency"]) in kinds
    assert ("triage", senders["urgent"]) in kinds
    assert ("handoff", senders["handoff"]) in kinds
    # Open EMERGENCY and URGENT items come before everything else, EMERGENCY first.
    highlighted = [item["highlight"] for item in items]
    assert highlighted == sorted(highlighted, reverse=True)
    top = [item for item in items if item["highlight"]]
    assert [item["level"] for item in top] == sorted((item["level"] for item in top), key=["EMERGENCY", "URGENT"].index)


def check_feedback_and_insight(store: ConsoleStore, senders: Dict[str, str]) -> None:
    topics = {row["topic"]: row for row in store.feedback_summary()}
    assert topics["back_pain_after_sex_causes"]["not_helpful"] >= 1
    assert topics["back_pain_after_sex_prevention"]["helpful"] >= 1
    now = datetime.now().astimezone()
    data = store.insight(now - timedelta(days=1), now + timedelta(days=1))
    assert len(data["conversation_starts"]) >= len(senders)
    assert {"back_pain_after_sex_causes", "back_pain_after_sex_prevention"} <= {t["topic"] for t in data["topics"]}
    assert data["fallback_messages"] >= 1 and data["typed_messages"] > data["fallback_messages"]
    for level in ("EMERGENCY", "URGENT", "BOOKING"):
        assert data["red_flags"][level]["conversations"] >= 1
    assert len(data["booking_times"]) >= 1


def check_all(store: ConsoleStore, senders: Dict[str, str]) -> None:
    check_flags(store, senders)
    check_filters(store, senders)
    check_reference_search(store, senders)
    check_queue(store, senders)
    check_feedback_and_insight(store, senders)
