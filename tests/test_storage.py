"""The persistence module on SQLite and on the running PostgreSQL, including a database that goes away."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from clinicbot.storage import Store, booking_reference
from tests.db_helpers import TcpProxy, postgres_schema

PROJECT_TABLES = {"bookings", "triage_events", "handoffs", "feedback", "staff_users", "status_changes"}


def a_booking(key: str = "conv-1:1700000000.0", **overrides):
    booking = {
        "idempotency_key": key,
        "conversation_id": key.split(":")[0],
        "channel": "rest",
        "name": "Maria Lopez",
        "contact": "555-123-4567",
        "contact_kind": "phone",
        "visit_type": "in_person",
        "preferred_times": "weekday mornings",
        "reason": "Red flag (booking): tingling, left leg",
        "triage_level": "BOOKING",
        "consent": True,
    }
    booking.update(overrides)
    return booking


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path / "outbox")
    else:
        with postgres_schema() as url:
            store = Store(url, tmp_path / "outbox")
            yield store
            store.engine.dispose()


def test_schema_creation_is_automatic_and_repeatable(store):
    store.ensure_schema()
    store._schema_ready = False
    store.ensure_schema()  # a second run must not fail or duplicate anything
    assert PROJECT_TABLES <= set(store.table_names())


def test_a_confirmed_booking_is_stored_once_even_if_confirmed_twice(store):
    first = store.save_booking(a_booking())
    second = store.save_booking(a_booking())
    assert first.stored and second.stored
    assert first.reference == second.reference == booking_reference("conv-1:1700000000.0")
    rows = store.list_bookings()
    assert len(rows) == 1
    assert rows[0]["name"] == "Maria Lopez"
    assert rows[0]["status"] == "new"
    assert rows[0]["triage_level"] == "BOOKING"


def test_reference_is_short_and_readable():
    reference = booking_reference("abc:1.0")
    assert reference.startswith("PH-") and len(reference) == 9
    assert not set(reference[3:]) & set("01IO")


def test_triage_events_are_recorded_with_the_matched_words(store):
    store.record_triage("conv-2", "EMERGENCY", ["numbness", "groin", "back pain"], rule="cauda_equina", channel="rest")
    events = store.list_triage_events()
    assert [(e["conversation_id"], e["level"], e["rule"]) for e in events] == [("conv-2", "EMERGENCY", "cauda_equina")]
    assert "groin" in events[0]["matched"]


def test_status_changes_record_who_and_when(store):
    store.save_booking(a_booking())
    booking_id = store.list_bookings()[0]["id"]
    store.set_status("booking", booking_id, "contacted", changed_by="nurse.kim")
    assert store.list_bookings()[0]["status"] == "contacted"
    with store.engine.connect() as connection:
        change = connection.execute(text("SELECT old_status, new_status, changed_by FROM status_changes")).one()
    assert tuple(change) == ("new", "contacted", "nurse.kim")
    with pytest.raises(ValueError):
        store.set_status("booking", booking_id, "lost", changed_by="nurse.kim")


def test_a_booking_made_while_the_database_is_down_is_kept_and_written_later(tmp_path):
    """SQLite cannot 'go down', so this runs against PostgreSQL through a proxy we switch off."""
    proxy = TcpProxy().start()
    with postgres_schema(host_port=f"127.0.0.1:{proxy.port}") as url:
        store = Store(url, tmp_path / "outbox")
        store.ensure_schema()
        store.save_booking(a_booking("before:1.0"))

        proxy.stop()  # the database goes away mid-conversation
        result = store.save_booking(a_booking("during:2.0", name="Sam Patel"))
        assert result.stored is False
        assert result.reference == booking_reference("during:2.0")
        assert [p.name for p in store.pending_outbox()] == [f"{result.reference}.json"]

        proxy.start()  # back again
        assert store.flush_outbox() == 1
        assert store.pending_outbox() == []
        names = sorted(row["name"] for row in store.list_bookings())
        assert names == ["Maria Lopez", "Sam Patel"]
        assert store.flush_outbox() == 0  # nothing twice
        store.engine.dispose()
    proxy.stop()


def test_the_next_successful_booking_also_flushes_the_outbox(tmp_path):
    proxy = TcpProxy().start()
    with postgres_schema(host_port=f"127.0.0.1:{proxy.port}") as url:
        store = Store(url, tmp_path / "outbox")
        store.ensure_schema()
        proxy.stop()
        assert store.save_booking(a_booking("queued:1.0")).stored is False
        proxy.start()
        assert store.save_booking(a_booking("later:2.0", name="Jo")).stored is True
        assert len(store.list_bookings()) == 2
        store.engine.dispose()
    proxy.stop()


test_a_booking_made_while_the_database_is_down_is_kept_and_written_later = pytest.mark.postgres(
    test_a_booking_made_while_the_database_is_down_is_kept_and_written_later
)
test_the_next_successful_booking_also_flushes_the_outbox = pytest.mark.postgres(
    test_the_next_successful_booking_also_flushes_the_outbox
)


def test_a_failed_statement_does_not_put_patient_details_in_the_error(tmp_path):
    # The error text is what ends up in logs (issue 11 item 6).
    from clinicbot.storage import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'clinic.db'}")
    with pytest.raises(Exception) as failure, engine.connect() as connection:
        connection.execute(text("INSERT INTO no_such_table (name, email) VALUES (:name, :email)"),
                           {"name": "Jane Patient", "email": "jane@example.org"})
    assert "Jane Patient" not in str(failure.value) and "jane@example.org" not in str(failure.value)


# -- the booking outbox: never blocked by a bad file, encrypted at rest when a key is set (issue 11) -------------
def queue_booking(store: Store, key: str, name: str) -> str:
    """What save_booking does while the database is down: the booking waits in the outbox."""
    row = store._booking_row(a_booking(key, name=name))
    store._write_outbox(row)
    return row["reference"]


def test_a_corrupt_outbox_file_is_quarantined_and_never_blocks_the_bookings_after_it(tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path / "outbox")
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "PH-AAAAAA.json").write_text('{"reference": "PH-AAAAAA", "name": "Trunc')  # half a file
    queued = queue_booking(store, "queued:1.0", "Sam Patel")

    result = store.save_booking(a_booking("now:2.0", name="Jo Kim"))

    assert result.stored is True  # the patient is told the truth: stored
    assert sorted(row["name"] for row in store.list_bookings()) == ["Jo Kim", "Sam Patel"]
    assert store.pending_outbox() == []
    assert (tmp_path / "outbox" / "quarantine" / "PH-AAAAAA.json").exists()
    assert queued not in {p.stem for p in (tmp_path / "outbox" / "quarantine").iterdir()}
    assert "Trunc" not in caplog.text  # the log says which file, never what is in it


def test_with_a_key_the_outbox_is_encrypted_at_rest_and_still_flushes(tmp_path):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    store = Store(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path / "outbox", outbox_key=key)
    reference = queue_booking(store, "queued:1.0", "Sam Patel")

    [path] = store.pending_outbox()
    assert path.name == f"{reference}.fernet"
    assert b"Sam Patel" not in path.read_bytes() and b"555" not in path.read_bytes()

    without_key = Store(f"sqlite:///{tmp_path / 'clinic.db'}", tmp_path / "outbox")
    assert without_key.flush_outbox() == 0 and store.pending_outbox() == [path]  # kept, not quarantined

    assert store.flush_outbox() == 1
    assert [row["name"] for row in store.list_bookings()] == ["Sam Patel"]
