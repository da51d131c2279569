"""An action server that accepts the call and never answers (issue 11 item 11): Rasa 3.6 would wait 300 s, holding
the patient's turn and the conversation lock; the project's tracker store sets ACTION_TIMEOUT_SECONDS instead.
The trained model in-process (tests/channels/conftest.py), with a real socket that never replies."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid

import pytest
import rasa.core.actions.action
from rasa.utils.endpoints import EndpointConfig

from clinicbot.rasa_stores import ConfiguredSQLTrackerStore

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _silent_server() -> tuple:
    """A TCP server that accepts connections and reads, but never writes a byte back."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    return listener, held


async def test_a_hung_action_server_costs_the_patient_seconds_not_minutes(channel_agent, monkeypatch, tmp_path):
    monkeypatch.setattr(rasa.core.actions.action, "DEFAULT_REQUEST_TIMEOUT", rasa.core.actions.action.DEFAULT_REQUEST_TIMEOUT)
    monkeypatch.setenv("TRACKER_STORE_URL", f"sqlite:///{tmp_path / 'tracker.db'}")
    monkeypatch.setenv("ACTION_TIMEOUT_SECONDS", "2")
    ConfiguredSQLTrackerStore()  # what the Rasa server builds at start
    listener, held = _silent_server()
    monkeypatch.setattr(channel_agent.processor, "action_endpoint",
                        EndpointConfig(f"http://127.0.0.1:{listener.getsockname()[1]}/webhook"))
    try:
        # booking-level advice, then action_triage_followup (a custom action: it hangs), then the booking offer
        replies = await asyncio.wait_for(
            channel_agent.handle_text("I get tingling in my left leg after sex", sender_id=uuid.uuid4().hex), timeout=60)
    finally:
        listener.close()
        for connection in held:
            connection.close()

    texts = [reply.get("text", "") for reply in replies]
    assert "should be checked by a clinician" in texts[0]
    assert texts[-1] == "Would you like to book an appointment with the clinic?"


@pytest.mark.postgres
def test_the_tracker_store_survives_a_dropped_database_connection(monkeypatch):
    """A PostgreSQL restart drops every pooled connection: with pre-ping the next turn reconnects, not fails."""
    import sqlalchemy as sa
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    monkeypatch.setenv("TRACKER_STORE_URL", POSTGRES_URL)
    store = ConfiguredSQLTrackerStore()
    sender = f"prepping-{uuid.uuid4().hex[:8]}"
    asyncio.run(store.save(DialogueStateTracker.from_events(sender, [UserUttered("hello")])))
    with store.engine.connect() as pooled:
        pid = pooled.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with sa.create_engine(POSTGRES_URL).connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")

    tracker = asyncio.run(store.retrieve(sender))

    assert tracker is not None and tracker.latest_message.text == "hello"
