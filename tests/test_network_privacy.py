"""What the running stack exposes (issue 11): loopback only, no Rasa HTTP API, an action server that answers only
the Rasa server, and a REST channel that cannot reach another channel's patient."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import httpx
import pytest

from clinicbot.action_server import SECRET_HEADER
from clinicbot.run import Ports, production_warnings, rasa_api_arguments
from clinicbot.console.redaction import pseudonym
from clinicbot.settings import PROJECT_ROOT, load_settings
from clinicbot.storage import ConsoleStore


def _listening_sockets() -> List[Tuple[str, int]]:
    """(local address as hex, port) of every listening TCP socket on this machine, from /proc/net/tcp{,6}."""
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A":  # LISTEN
                sockets.append((address, int(port, 16)))
    return sockets


_LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as the kernel prints them


def test_every_server_listens_on_loopback_only(stack):
    ports = {stack.ports.rasa, stack.ports.actions, stack.ports.web}
    ours = [(address, port) for address, port in _listening_sockets() if port in ports]

    assert {port for _, port in ours} == ports, "a server of the stack is not listening at all"
    assert [s for s in ours if s[0] not in _LOOPBACK] == []


def test_rasa_http_api_is_off(stack, chat):
    chat.say("hello")

    assert httpx.get(f"{stack.rasa_url}/conversations/{chat.conversation_id}/tracker", timeout=10).status_code == 404
    forged = httpx.post(
        f"{stack.rasa_url}/conversations/{chat.conversation_id}/tracker/events",
        json={"event": "slot", "name": "triage_level", "value": "NONE"}, timeout=10,
    )
    assert forged.status_code == 404
    assert httpx.put(f"{stack.rasa_url}/model", json={"model_file": "/tmp/other.tar.gz"}, timeout=10).status_code == 404


def _forged_booking_call(sender: str) -> Dict:
    slots = {
        "booking_confirmed": "yes", "booking_consent": True, "booking_name": "Forged Name",
        "booking_contact": "555-000-1111", "booking_visit_type": "in_person", "booking_times": "any",
    }
    return {
        "next_action": "action_submit_booking",
        "sender_id": sender,
        "version": "3.6.21",
        "domain": {},
        "tracker": {"sender_id": sender, "slots": slots, "latest_message": {}, "events": [], "paused": False,
                    "followup_action": None, "active_loop": {}, "latest_action_name": None},
    }


def test_action_server_refuses_a_forged_tracker(stack, stack_store):
    sender = f"forged-{uuid.uuid4().hex[:8]}"
    url = f"http://localhost:{stack.ports.actions}"

    without = httpx.post(f"{url}/webhook", json=_forged_booking_call(sender), timeout=10)
    guessed = httpx.post(f"{url}/webhook", json=_forged_booking_call(sender), headers={SECRET_HEADER: "guess"}, timeout=10)

    assert (without.status_code, guessed.status_code) == (403, 403)
    assert httpx.get(f"{url}/actions", timeout=10).status_code == 403
    assert [b for b in stack_store.list_bookings() if b["conversation_id"] == sender] == []
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the health check stays open


def test_a_rest_caller_cannot_write_into_a_whatsapp_conversation(stack, stack_env):
    whatsapp_id = f"whatsapp:+1555{uuid.uuid4().int % 10**7:07d}"

    url = f"{stack.rasa_url}/webhooks/rest/webhook"
    replies = httpx.post(url, json={"sender": whatsapp_id, "message": "hello"}, timeout=60).json()

    store = ConsoleStore(stack_env["DATABASE_URL"])
    assert replies and {r["recipient_id"] for r in replies} == {f"rest:{whatsapp_id}"}
    assert store.conversation_events(whatsapp_id) == []
    assert [e["data"]["text"] for e in store.conversation_events(f"rest:{whatsapp_id}", ["user"])] == ["hello"]


def test_rasa_api_needs_a_token_and_named_origins():
    ports = Ports(rasa=5005, actions=5055, web=8080)

    assert rasa_api_arguments(load_settings({}), ports) == []
    with pytest.raises(SystemExit, match="RASA_AUTH_TOKEN"):
        rasa_api_arguments(load_settings({"RASA_API_ENABLED": "true"}), ports)

    arguments = rasa_api_arguments(load_settings({"RASA_API_ENABLED": "1", "RASA_AUTH_TOKEN": "t0ken"}), ports)
    assert arguments[:3] == ["--enable-api", "--auth-token", "t0ken"]
    assert "*" not in arguments
    assert arguments[arguments.index("--cors") + 1:] == ["http://localhost:8080", "http://127.0.0.1:8080"]

    configured = load_settings({"RASA_API_ENABLED": "1", "RASA_AUTH_TOKEN": "t", "RASA_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert rasa_api_arguments(configured, ports)[-2:] == ["https://a.example", "https://b.example"]


def test_make_run_warns_about_each_production_setting_left_at_its_default():
    laptop = production_warnings(load_settings({}))
    assert [w.split(" ", 1)[0] for w in laptop] == ["CONSOLE_SECRET", "BOOKING_OUTBOX_KEY", "DATABASE_URL", "RASA_AUTH_TOKEN"]

    production = load_settings({
        "CONSOLE_SECRET": "x" * 40, "BOOKING_OUTBOX_KEY": "k" * 44, "DATABASE_URL": "postgresql://db/clinic",
        "RASA_AUTH_TOKEN": "t",
    })
    assert production_warnings(production) == []


@pytest.mark.parametrize("server", ["clinicbot.web", "clinicbot.action_server", "clinicbot.run"])
def test_in_production_no_server_starts_with_the_development_console_secret(server):
    environment = {k: v for k, v in os.environ.items() if k != "CONSOLE_SECRET"}
    environment.update(DEPLOYMENT="production", ACTION_SERVER_SECRET="s" * 32, PYTHONPATH=str(PROJECT_ROOT))
    started = subprocess.run([sys.executable, "-m", server, "--port", "1"] if server != "clinicbot.run" else
                             [sys.executable, "-m", server], env=environment, cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode != 0
    assert "DEPLOYMENT=production needs CONSOLE_SECRET" in started.stderr


def test_export_pseudonyms_are_not_keyed_with_the_console_secret():
    settings = load_settings({"CONSOLE_SECRET": "c" * 40})
    assert pseudonym(settings.pseudonym_secret, "whatsapp:+15550100") != pseudonym(settings.console_secret, "whatsapp:+15550100")
    own = load_settings({"CONSOLE_SECRET": "c" * 40, "PSEUDONYM_KEY": "p" * 40})
    assert own.pseudonym_secret == "p" * 40
