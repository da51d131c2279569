"""The project's persistence: one SQLAlchemy module (2.0-style API on SQLAlchemy 1.4).

Tables: bookings, triage_events, handoffs, feedback, staff_users, status_changes.
Rasa's own tracker store (table `events`) lives in the same database by default and is read here
for the staff console; it is written only by Rasa.

Nothing a patient confirms is lost: when the database is unavailable, a booking is written as a
JSON file to an outbox directory and flushed into the database on the next successful contact
(`flush_outbox`). Inserts are idempotent on a key derived from the conversation, so a double
confirmation, or a flush that races a retry, never makes two bookings.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError, InterfaceError

logger = logging.getLogger(__name__)

metadata = MetaData()

QUEUE_STATUSES = ("new", "contacted", "scheduled", "closed")
TRIAGE_LEVELS = ("EMERGENCY", "URGENT", "BOOKING", "NONE")

bookings = Table(
    "bookings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reference", String(16), nullable=False, unique=True),
    # One booking per form run in a conversation: a second confirm hits this unique key.
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("conversation_id", String(255), nullable=False, index=True),
    Column("channel", String(50)),
    Column("name", String(200), nullable=False),
    Column("contact", String(200), nullable=False),
    Column("contact_kind", String(10), nullable=False),  # phone | email
    Column("visit_type", String(20), nullable=False),  # in_person | virtual
    Column("preferred_times", String(500)),
    Column("reason", Text),
    Column("triage_level", String(12), nullable=False, default="NONE"),
    Column("consent", Boolean, nullable=False),
    Column("status", String(20), nullable=False, default="new"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

triage_events = Table(
    "triage_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", String(255), nullable=False, index=True),
    Column("channel", String(50)),
    Column("level", String(12), nullable=False, index=True),
    Column("rule", String(100)),
    Column("matched", Text, nullable=False),  # JSON list of the words that matched
    Column("message_timestamp", Float),  # the user event's timestamp in the tracker store
    Column("status", String(20), nullable=False, default="new"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", String(255), nullable=False, index=True),
    Column("channel", String(50)),
    Column("note", Text),
    Column("status", String(20), nullable=False, default="new"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation_id", String(255), nullable=False, index=True),
    Column("topic", String(100), nullable=False, index=True),
    Column("helpful", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

staff_users = Table(
    "staff_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(20), nullable=False, default="staff"),  # staff | clinician (may export identifiable data)
    Column("created_at", DateTime(timezone=True), nullable=False),
)

status_changes = Table(
    "status_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item_kind", String(20), nullable=False),  # booking | triage | handoff
    Column("item_id", Integer, nullable=False),
    Column("old_status", String(20)),
    Column("new_status", String(20), nullable=False),
    Column("changed_by", String(100), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

QUEUE_TABLES = {"booking": bookings, "triage": triage_events, "handoff": handoffs}

# Errors that mean "the database cannot be reached right now" rather than "this row is wrong".
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def booking_reference(idempotency_key: str) -> str:
    """A short reference a patient can read out on the phone, stable for the same request."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest().upper()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
    number = int(digest[:16], 16)
    chars = []
    for _ in range(6):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "PH-" + "".join(chars)


@dataclass(frozen=True)
class BookingResult:
    reference: str
    stored: bool  # False: kept in the outbox, written when the database is back


def _sqlite_file(url: str) -> Optional[Path]:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        return Path(url[len(prefix):])
    return None


def make_engine(url: str) -> Engine:
    sqlite_path = _sqlite_file(url)
    kwargs: Dict[str, Any] = {"future": True, "pool_pre_ping": True}
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 15}
    else:
        kwargs["connect_args"] = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = create_engine(url, **kwargs)
    if sqlite_path is not None:
        # Rasa and the action server write the same file: WAL lets readers and one writer coexist.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

    return engine


class Store:
    """Data access for the project's tables. Create one per process; it is thread-safe."""

    def __init__(self, database_url: str, outbox_dir: Optional[Path] = None) -> None:
        self.database_url = database_url
        self.engine = make_engine(database_url)
        self.outbox_dir = outbox_dir
        self._schema_ready = False
        self._lock = threading.Lock()

    # -- schema -----------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables; safe to repeat and safe beside Rasa's `events` table.

        Alembic (migrations/) owns changes to existing tables; this only creates what is absent,
        so a fresh laptop needs no migration step.
        """
        if self._schema_ready:
            return
        with self._lock:
            metadata.create_all(self.engine, checkfirst=True)
            self._schema_ready = True

    # -- bookings ---------------------------------------------------------------------------
    def save_booking(self, booking: Dict[str, Any]) -> BookingResult:
        """Store a confirmed booking, or keep it in the outbox if the database is down.

        `booking` needs idempotency_key, conversation_id, name, contact, contact_kind, visit_type,
        consent; optional channel, preferred_times, reason, triage_level.
        """
        row = self._booking_row(booking)
        try:
            self.ensure_schema()
            self._insert_booking(row)
        except UNAVAILABLE_ERRORS as error:
            logger.warning("Database unavailable, booking %s kept in the outbox: %s", row["reference"], error)
            self._write_outbox(row)
            return BookingResult(reference=row["reference"], stored=False)
        self.flush_outbox()
        return BookingResult(reference=row["reference"], stored=True)

    def _booking_row(self, booking: Dict[str, Any]) -> Dict[str, Any]:
        row = {
            "idempotency_key": booking["idempotency_key"],
            "reference": booking_reference(booking["idempotency_key"]),
            "conversation_id": booking["conversation_id"],
            "channel": booking.get("channel"),
            "name": booking["name"],
            "contact": booking["contact"],
            "contact_kind": booking["contact_kind"],
            "visit_type": booking["visit_type"],
            "preferred_times": booking.get("preferred_times"),
            "reason": booking.get("reason"),
            "triage_level": booking.get("triage_level") or "NONE",
            "consent": bool(booking["consent"]),
            "status": "new",
            "created_at": booking.get("created_at") or utcnow(),
        }
        return row

    def _insert_booking(self, row: Dict[str, Any]) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(bookings).values(**row))
        except IntegrityError:
            # Same idempotency key: this request is already stored. Not an error for the patient.
            with self.engine.connect() as connection:
                existing = connection.execute(
                    select(bookings.c.id).where(bookings.c.idempotency_key == row["idempotency_key"])
                ).first()
            if existing is None:
                raise

    def _write_outbox(self, row: Dict[str, Any]) -> None:
        if self.outbox_dir is None:
            raise RuntimeError("Database unavailable and no outbox configured")
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        payload = dict(row, created_at=row["created_at"].isoformat())
        target = self.outbox_dir / f"{row['reference']}.json"
        # Write then rename, so a crash never leaves half a request behind.
        handle, temporary = tempfile.mkstemp(dir=self.outbox_dir, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)

    def pending_outbox(self) -> List[Path]:
        if self.outbox_dir is None or not self.outbox_dir.exists():
            return []
        return sorted(self.outbox_dir.glob("*.json"))

    def flush_outbox(self) -> int:
        """Write every queued booking into the database; returns how many were written."""
        written = 0
        for path in self.pending_outbox():
            row = json.loads(path.read_text(encoding="utf-8"))
            row["created_at"] = datetime.fromisoformat(row["created_at"])
            try:
                self.ensure_schema()
                self._insert_booking(row)
            except UNAVAILABLE_ERRORS:
                return written
            path.unlink()
            written += 1
        return written

    def list_bookings(self) -> List[Dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(bookings).order_by(bookings.c.id))]

    # -- triage, handoffs, feedback --------------------------------------------------------------
    def record_triage(
        self,
        conversation_id: str,
        level: str,
        matched: Iterable[str],
        rule: Optional[str] = None,
        channel: Optional[str] = None,
        message_timestamp: Optional[float] = None,
    ) -> None:
        self.ensure_schema()
        with self.engine.begin() as connection:
            connection.execute(
                insert(triage_events).values(
                    conversation_id=conversation_id,
                    channel=channel,
                    level=level,
                    rule=rule,
                    matched=json.dumps(list(matched)),
                    message_timestamp=message_timestamp,
                    status="new",
                    created_at=utcnow(),
                )
            )

    def list_triage_events(self) -> List[Dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(triage_events).order_by(triage_events.c.id))]

    def record_handoff(self, conversation_id: str, channel: Optional[str], note: Optional[str]) -> None:
        self.ensure_schema()
        with self.engine.begin() as connection:
            connection.execute(
                insert(handoffs).values(
                    conversation_id=conversation_id, channel=channel, note=note, status="new", created_at=utcnow()
                )
            )

    def record_feedback(self, conversation_id: str, topic: str, helpful: bool) -> None:
        self.ensure_schema()
        with self.engine.begin() as connection:
            connection.execute(
                insert(feedback).values(
                    conversation_id=conversation_id, topic=topic, helpful=helpful, created_at=utcnow()
                )
            )

    def feedback_by_topic(self) -> List[Dict[str, Any]]:
        helpful_count = func.sum(func.cast(feedback.c.helpful, Integer))
        statement = (
            select(feedback.c.topic, func.count().label("total"), helpful_count.label("helpful"))
            .group_by(feedback.c.topic)
            .order_by(feedback.c.topic)
        )
        with self.engine.connect() as connection:
            return [
                {"topic": r.topic, "total": r.total, "helpful": int(r.helpful or 0)}
                for r in connection.execute(statement)
            ]

    # -- queue ------------------------------------------------------------------------------
    def set_status(self, item_kind: str, item_id: int, new_status: str, changed_by: str) -> None:
        if new_status not in QUEUE_STATUSES:
            raise ValueError(f"unknown status {new_status!r}")
        table = QUEUE_TABLES[item_kind]
        with self.engine.begin() as connection:
            old = connection.execute(select(table.c.status).where(table.c.id == item_id)).scalar_one()
            connection.execute(update(table).where(table.c.id == item_id).values(status=new_status))
            connection.execute(
                insert(status_changes).values(
                    item_kind=item_kind,
                    item_id=item_id,
                    old_status=old,
                    new_status=new_status,
                    changed_by=changed_by,
                    changed_at=utcnow(),
                )
            )

    def table_names(self) -> List[str]:
        return inspect(self.engine).get_table_names()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def delete_conversations_older_than(self, cutoff: datetime) -> Dict[str, int]:
        """Retention: remove tracker events and the project's rows for conversations before `cutoff`."""
        counts: Dict[str, int] = {}
        with self.engine.begin() as connection:
            for table in (bookings, triage_events, handoffs, feedback):
                result = connection.execute(delete(table).where(table.c.created_at < cutoff))
                counts[table.name] = result.rowcount
            if "events" in inspect(connection).get_table_names():
                events = Table("events", MetaData(), autoload_with=connection)
                result = connection.execute(delete(events).where(events.c.timestamp < cutoff.timestamp()))
                counts["events"] = result.rowcount
        return counts


_default_store: Optional[Store] = None
_default_lock = threading.Lock()


def default_store() -> Store:
    """The process-wide store built from settings (lazily: no I/O at import time)."""
    global _default_store
    with _default_lock:
        if _default_store is None:
            from clinicbot.settings import load_settings

            settings = load_settings()
            _default_store = Store(settings.database_url, settings.outbox_dir)
        return _default_store
