"""CSV exports for a date range: conversations (one row each, with flags), messages, or the queue.

Redacted unless `identifiable` is set (the web layer allows that only for clinicians): names, phone
numbers and e-mail addresses go, also inside free text, and conversation ids become pseudonyms.
Every cell that a spreadsheet could read as a formula is prefixed with an apostrophe.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence

from clinicbot.console.redaction import Redactor, pseudonym
from clinicbot.storage import ConsoleStore, ConversationFilter

EXPORTS = ("conversations", "messages", "queue")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_CONVERSATIONS = 100000


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().isoformat(timespec="seconds")
    if isinstance(value, float):
        value = f"{value:.3f}"
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue()


class Exporter:
    def __init__(self, store: ConsoleStore, secret: str, identifiable: bool) -> None:
        self.store = store
        self.secret = secret
        self.identifiable = identifiable

    def _id(self, conversation_id: str) -> str:
        return conversation_id if self.identifiable else pseudonym(self.secret, conversation_id)

    def _redactors(self, conversation_ids: Sequence[str]) -> Dict[str, Redactor]:
        known = self.store.booking_names(conversation_ids)
        slots = self.store.slot_values(conversation_ids, ("booking_name", "booking_contact"))
        return {cid: Redactor(set(known.get(cid, ())) | set(slots.get(cid, ()))) for cid in conversation_ids}

    def _text(self, redactors: Dict[str, Redactor], conversation_id: str, text: Optional[str]) -> str:
        if self.identifiable:
            return text or ""
        redactor = redactors.get(conversation_id) or Redactor()
        return redactor.text(text)

    def conversations(self, start: datetime, end: datetime) -> str:
        rows, _ = self.store.list_conversations(ConversationFilter(start=start, end=end, limit=MAX_CONVERSATIONS))
        header = ["conversation", "started", "last_activity", "channel", "turns", "red_flag_level", "bookings",
                  "fallbacks", "negative_feedback", "handoffs"]
        return _csv(
            header,
            (
                [self._id(r["conversation_id"]), r["started_at"], r["last_activity_at"], r["channel"], r["turns"],
                 r["red_flag_level"], r["bookings"], r["fallbacks"], r["negative_feedback"], r["handoffs"]]
                for r in rows
            ),
        )

    def messages(self, start: datetime, end: datetime) -> str:
        events = self.store.events_between(start, end, ("user", "bot"))
        ids = sorted({event["sender_id"] for event in events})
        redactors = {} if self.identifiable else self._redactors(ids)
        header = ["conversation", "time", "speaker", "text", "intent", "confidence", "triage_level", "triage_matched",
                  "response", "channel"]
        rows: List[List[Any]] = []
        for event in events:
            data = event["data"]
            cid = event["sender_id"]
            if event["type_name"] == "user":
                parse = data.get("parse_data") or {}
                intent = parse.get("intent") or {}
                triage = parse.get("triage") or {}
                matched = triage.get("matched") or []
                rows.append([
                    self._id(cid), _from_ts(event["timestamp"]), "patient", self._text(redactors, cid, data.get("text")),
                    intent.get("name"), intent.get("confidence"), triage.get("level"),
                    self._text(redactors, cid, ", ".join(matched)) if matched else "", "", data.get("input_channel"),
                ])
            else:
                rows.append([
                    self._id(cid), _from_ts(event["timestamp"]), "bot", self._text(redactors, cid, data.get("text")),
                    "", "", "", "", (data.get("metadata") or {}).get("utter_action"), "",
                ])
        return _csv(header, rows)

    def queue(self, start: datetime, end: datetime) -> str:
        items = self.store.queue_items(start=start, end=end)
        ids = sorted({item["conversation_id"] for item in items})
        redactors = {} if self.identifiable else self._redactors(ids)
        header = ["kind", "id", "reference", "created", "level", "status", "changed_by", "changed_at", "name", "contact",
                  "visit_type", "preferred_times", "details", "conversation", "channel"]
        rows = []
        for item in items:
            cid = item["conversation_id"]
            change = item.get("last_change") or {}
            if item["kind"] == "booking":
                details = item.get("reason")
            elif item["kind"] == "triage":
                details = ", ".join(item.get("matched") or [])
            else:
                details = item.get("note")
            name, contact = item.get("name"), item.get("contact")
            if not self.identifiable:
                name = "[name]" if name else ""
                contact = Redactor.contact(contact)
            rows.append([
                item["kind"], item["id"], item.get("reference"), item["created_at"], item.get("level"), item["status"],
                change.get("changed_by"), change.get("changed_at"), name, contact, item.get("visit_type"),
                self._text(redactors, cid, item.get("preferred_times")), self._text(redactors, cid, details),
                self._id(cid), item.get("channel"),
            ])
        return _csv(header, rows)

    def export(self, what: str, start: datetime, end: datetime) -> str:
        if what not in EXPORTS:
            raise ValueError(what)
        return getattr(self, what)(start, end)


def _from_ts(value: Optional[float]) -> Optional[datetime]:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None

