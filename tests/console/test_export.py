"""CSV export (clinicians only): redacted by default (also inside free text), identifiable when the clinician asks."""
from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest

from clinicbot.console.redaction import pseudonym
from scripted_patients import BOOKING_NAME, BOOKING_PHONE, FREE_TEXT_EMAIL, FREE_TEXT_PHONE

IDENTIFYING = [BOOKING_NAME, "Jane", "Roe", BOOKING_PHONE, "5551234567", FREE_TEXT_EMAIL, FREE_TEXT_PHONE]


async def export(client, what: str, identifiable: bool = False):
    today = date.today().isoformat()
    params = {"what": what, "from": today, "to": today}
    if identifiable:
        params["identifiable"] = "1"
    _, response = await client.get("/console/export.csv", params=params)
    return response


def rows(response):
    return list(csv.DictReader(io.StringIO(response.text)))


def assert_redacted(text: str, conversations) -> None:
    for value in IDENTIFYING:
        assert not re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", text, re.I), f"{value!r} leaked into a redacted export"
    for sender in conversations.values():
        assert sender not in text, "raw conversation ids can be phone numbers: they are pseudonymised"


@pytest.mark.parametrize("what", ["messages", "queue", "conversations"])
async def test_a_default_export_is_redacted(clinician_client, conversations, console_settings, what):
    response = await export(clinician_client, what)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "redacted" in response.headers["content-disposition"]
    assert_redacted(response.text, conversations)
    booking_id = pseudonym(console_settings.pseudonym_secret, conversations["booking"])
    assert booking_id in response.text  # rows stay grouped by a stable pseudonym


async def test_redaction_reaches_into_free_text(clinician_client, conversations, console_settings):
    table = rows(await export(clinician_client, "messages"))
    booking_id = pseudonym(console_settings.pseudonym_secret, conversations["booking"])
    booking = [row for row in table if row["conversation"] == booking_id]
    said = [row["text"] for row in booking if row["speaker"] == "patient"]
    assert "my name is [name]" in said and "[phone]" in said  # the form answers
    read_back = next(row["text"] for row in booking if row["response"] == "utter_booking_read_back")
    assert "Name: [name]" in read_back and "Contact: [phone]" in read_back  # the bot repeating them
    markup_id = pseudonym(console_settings.pseudonym_secret, conversations["markup"])
    typed = next(row["text"] for row in table if row["conversation"] == markup_id and row["speaker"] == "patient")
    assert "my email is [email] and my number is [phone]" in typed
    # Clinical content stays: it is what the export is for.
    assert any("tingling" in row["text"] for row in booking)

    queue = rows(await export(clinician_client, "queue"))
    booking_row = next(row for row in queue if row["kind"] == "booking" and row["conversation"] == booking_id)
    assert (booking_row["name"], booking_row["contact"]) == ("[name]", "[phone]")
    assert booking_row["preferred_times"] == "weekday mornings"


async def test_cells_that_look_like_formulas_are_defused(clinician_client, conversations, console_settings):
    table = rows(await export(clinician_client, "messages"))
    formula_id = pseudonym(console_settings.pseudonym_secret, conversations["formula"])
    typed = next(row["text"] for row in table if row["conversation"] == formula_id and row["speaker"] == "patient")
    assert typed.startswith("'=HYPERLINK(")


@pytest.mark.parametrize("identifiable", [False, True])
async def test_front_desk_cannot_export(front_desk_client, conversations, identifiable):
    response = await export(front_desk_client, "queue", identifiable=identifiable)
    assert response.status_code == 403
    assert BOOKING_NAME not in response.text


async def test_clinician_export_is_redacted_unless_asked(clinician_client, conversations):
    response = await export(clinician_client, "messages")
    assert response.status_code == 200
    assert_redacted(response.text, conversations)


@pytest.mark.parametrize("what", ["messages", "queue"])
async def test_clinician_who_asks_gets_identifiable_data(clinician_client, conversations, what):
    response = await export(clinician_client, what, identifiable=True)
    assert response.status_code == 200
    assert "identifiable" in response.headers["content-disposition"]
    assert BOOKING_NAME in response.text and BOOKING_PHONE in response.text
    assert conversations["booking"] in response.text
    if what == "messages":
        assert FREE_TEXT_EMAIL in response.text


async def test_export_checks_its_parameters(clinician_client):
    _, response = await clinician_client.get("/console/export.csv", params={"what": "everything"})
    assert response.status_code == 400
    _, response = await clinician_client.get("/console/export.csv", params={"what": "queue", "from": "2020-01-01", "to": "2026-01-01"})
    assert response.status_code == 400  # more than a year at once
