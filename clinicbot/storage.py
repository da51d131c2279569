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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
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
from cryptography.fernet import Fernet
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
    Column("role", String(20), nullable=False, default="front_desk"),  # clinicbot.console.auth.ROLES
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

# Who read or changed what in the console: sign-ins, every read of patient data, every status change.
# Append-only: the code only inserts, retention never deletes it (clinicbot/console/retention.py).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("username", String(100)),  # as typed at a failed sign-in
    Column("role", String(20)),
    Column("action", String(40), nullable=False),  # sign-in, sign-in-failed, transcript, queue, export, status, ...
    Column("target", String(255)),  # the conversation, queue view or export read
    Column("detail", Text),
    Column("address", String(64)),
)

# Console sessions ended by signing out: their signed cookies stay valid until they expire, so a replayed cookie
# must be refused here (by a digest of the session's random token, never the token itself).
ended_sessions = Table(
    "ended_sessions",
    metadata,
    Column("session_key", String(64), primary_key=True),
    Column("ended_at", DateTime(timezone=True), nullable=False, index=True),
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


PLAIN_SUFFIX = ".json"
ENCRYPTED_SUFFIX = ".fernet"


class OutboxKeyMissing(Exception):
    """An encrypted outbox file, and no key to read it: kept where it is until the key is set."""


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
    # hide_parameters: a failed statement's message (which is logged) must not carry a patient's name or e-mail.
    kwargs: Dict[str, Any] = {"future": True, "pool_pre_ping": True, "hide_parameters": True}
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

    def __init__(self, database_url: str, outbox_dir: Optional[Path] = None, outbox_key: Optional[str] = None) -> None:
        self.database_url = database_url
        self.engine = make_engine(database_url)
        self.outbox_dir = outbox_dir
        # Bookings wait in the outbox as plain JSON, or encrypted (Fernet) when BOOKING_OUTBOX_KEY is set.
        self.outbox_cipher = Fernet(outbox_key) if outbox_key else None
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
        try:
            self.flush_outbox()
        except Exception:  # this booking is stored: nothing about the queue may make the patient hear otherwise
            logger.exception("Flushing the booking outbox failed; it is retried on the next booking and on schedule")
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
        payload = json.dumps(dict(row, created_at=row["created_at"].isoformat())).encode("utf-8")
        if self.outbox_cipher is not None:
            payload, suffix = self.outbox_cipher.encrypt(payload), ENCRYPTED_SUFFIX
        else:
            suffix = PLAIN_SUFFIX
        target = self.outbox_dir / f"{row['reference']}{suffix}"
        # Write then rename, so a crash never leaves half a request behind.
        handle, temporary = tempfile.mkstemp(dir=self.outbox_dir, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)

    def pending_outbox(self) -> List[Path]:
        if self.outbox_dir is None or not self.outbox_dir.exists():
            return []
        return sorted(p for p in self.outbox_dir.iterdir() if p.suffix in (PLAIN_SUFFIX, ENCRYPTED_SUFFIX))

    def _read_outbox(self, path: Path) -> Dict[str, Any]:
        payload = path.read_bytes()
        if path.suffix == ENCRYPTED_SUFFIX:
            if self.outbox_cipher is None:
                raise OutboxKeyMissing(path.name)
            payload = self.outbox_cipher.decrypt(payload)
        row = json.loads(payload.decode("utf-8"))
        row["created_at"] = datetime.fromisoformat(row["created_at"])
        self._booking_row(row)  # every field a booking needs is there
        return row

    def flush_outbox(self) -> int:
        """Write every queued booking into the database; returns how many were written.

        A file that cannot be read as a booking (corrupt, truncated, encrypted with another key) is moved to
        `quarantine/` for a person to look at, so that it never blocks the bookings queued after it.
        """
        written = 0
        for path in self.pending_outbox():
            try:
                row = self._read_outbox(path)
            except OutboxKeyMissing:
                logger.error("Booking outbox file %s is encrypted and BOOKING_OUTBOX_KEY is not set", path.name)
                continue
            except Exception as error:
                self._quarantine(path, error)
                continue
            try:
                self.ensure_schema()
                self._insert_booking(row)
            except UNAVAILABLE_ERRORS:
                return written
            path.unlink()
            written += 1
        return written

    def _quarantine(self, path: Path, error: Exception) -> None:
        folder = path.parent / "quarantine"
        folder.mkdir(exist_ok=True)
        os.replace(path, folder / path.name)
        # The file name is the booking reference; the error type says what was wrong, never the content.
        logger.error("Booking outbox file %s could not be read (%s): moved to %s", path.name, type(error).__name__, folder)

    def list_bookings(self) -> List[Dict[str, Any]]:
        self.ensure_schema()
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
        self.ensure_schema()
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
        self.ensure_schema()
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


_default_store: Optional[Store] = None
_default_lock = threading.Lock()


def default_store() -> Store:
    """The process-wide store built from settings (lazily: no I/O at import time)."""
    global _default_store
    with _default_lock:
        if _default_store is None:
            from clinicbot.settings import load_settings

            settings = load_settings()
            _default_store = Store(settings.database_url, settings.outbox_dir, settings.outbox_key)
        return _default_store


# =============================================================================================
# Staff console: read-only queries over Rasa's tracker store and the project's tables, staff
# accounts, and retention by conversation. Every query is SQLAlchemy Core and runs unchanged on
# SQLite and PostgreSQL (JSON inside `events.data` is read with the dialect's JSON functions).
# =============================================================================================
from collections import defaultdict as _defaultdict
from typing import Sequence as _Sequence, Set as _Set, Tuple as _Tuple

from sqlalchemy import JSON as _JSON, and_, case, cast, distinct, or_, type_coerce

from clinicbot.triage import ADVICE_RESPONSES

# Rasa's tracker store table, exactly as rasa.core.tracker_store.SQLTrackerStore declares it. It is NOT
# in `metadata`: Rasa creates and writes it, Alembic leaves it alone; the console reads it and the
# retention command deletes whole conversations from it.
tracker_metadata = MetaData()
tracker_events = Table(
    "events",
    tracker_metadata,
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255), nullable=False, index=True),
    Column("type_name", String(255), nullable=False),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)

RED_FLAG_INTENT_LEVELS = {
    "red_flag_emergency": "EMERGENCY",
    "red_flag_urgent": "URGENT",
    "red_flag_booking": "BOOKING",
}
LEVEL_RANKS = {"NONE": 0, "BOOKING": 1, "URGENT": 2, "EMERGENCY": 3}
RANK_LEVELS = {rank: level for level, rank in LEVEL_RANKS.items()}
# "Not understood / low confidence", per patient message (not counting answers to the booking form):
# the NLU fell back (FallbackClassifier), the bot replied with a fallback, or it answered from the FAQ
# with less certainty than LOW_CONFIDENCE in the intent or in the answer it picked. The
# FallbackClassifier in config.yml refuses below 0.45, so 0.45-0.6 is "answered, but unsure".
FALLBACK_INTENT = "nlu_fallback"
FALLBACK_ACTIONS = ("action_default_fallback", "utter_default")
LOW_CONFIDENCE = 0.6
CONVERSATION_FLAGS = ("red_flag", "booking", "fallback", "negative_feedback", "handoff")
_CHUNK = 500


def _chunks(values: _Sequence[Any], size: int = _CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _as_utc(value: Optional[datetime]) -> Optional[datetime]:
    """SQLite gives back naive datetimes (stored as UTC wall time); PostgreSQL gives aware ones."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _from_ts(timestamp: Optional[float]) -> Optional[datetime]:
    return datetime.fromtimestamp(timestamp, timezone.utc) if timestamp is not None else None


@dataclass
class ConversationFilter:
    """What the conversations list asks for. Several flags together mean "all of them" (AND)."""

    start: Optional[datetime] = None  # activity at or after (aware)
    end: Optional[datetime] = None  # activity before (aware)
    channel: Optional[str] = None
    red_flag: bool = False
    red_flag_level: Optional[str] = None  # EMERGENCY | URGENT | BOOKING: at least this level
    booking: bool = False
    fallback: bool = False
    negative_feedback: bool = False
    handoff: bool = False
    text: Optional[str] = None
    limit: int = 50
    offset: int = 0


class ConsoleStore(Store):
    """The staff console's data access: the project's tables plus Rasa's tracker store.

    The tracker store may live in another database (TRACKER_STORE_URL); then nothing is joined
    across the two and conversation ids are matched in Python instead.
    """

    def __init__(self, database_url: str, tracker_store_url: Optional[str] = None, outbox_dir: Optional[Path] = None) -> None:
        super().__init__(database_url, outbox_dir)
        if tracker_store_url is None or tracker_store_url == database_url:
            self.tracker_engine = self.engine
        else:
            self.tracker_engine = make_engine(tracker_store_url)

    @property
    def _same_database(self) -> bool:
        return self.tracker_engine is self.engine

    # -- JSON inside events.data ----------------------------------------------------------------
    def _json(self, *path: str, column=None):
        """A value inside a JSON text column (default events.data): PostgreSQL needs a cast, SQLite does not."""
        column = tracker_events.c.data if column is None else column
        if self.tracker_engine.dialect.name == "postgresql":
            document = cast(column, _JSON)
        else:
            document = type_coerce(column, _JSON)
        return document[path if len(path) > 1 else path[0]]

    def _json_str(self, *path: str, column=None):
        return self._json(*path, column=column).as_string()

    def _json_float(self, *path: str, column=None):
        return self._json(*path, column=column).as_float()

    def has_tracker_events(self) -> bool:
        return "events" in inspect(self.tracker_engine).get_table_names()

    def _project_ids(self, statement):
        """Conversation ids from a project table, as a subquery (same database) or a list (another database)."""
        if self._same_database:
            return statement.scalar_subquery()
        with self.engine.connect() as connection:
            return list(connection.execute(statement).scalars())

    # -- conversations --------------------------------------------------------------------------
    def _turns(self):
        """Each user message with the first action the bot took after it (`next_action`).

        The next action tells what the message was to the bot: an answer to the booking form
        (booking_form), an FAQ answered (utter_faq), or a fallback (utter_default).
        """
        events = tracker_events
        return (
            select(
                events.c.sender_id,
                events.c.type_name,
                events.c.timestamp,
                events.c.intent_name,
                events.c.data,
                func.lead(events.c.action_name)
                .over(partition_by=events.c.sender_id, order_by=events.c.id)
                .label("next_action"),
            )
            .where(
                or_(
                    events.c.type_name == "user",
                    and_(events.c.type_name == "action", events.c.action_name != "action_listen"),
                )
            )
            .subquery("turns")
        )

    def _not_understood(self, turns):
        """A patient message the bot did not understand, or answered from the FAQ while unsure.

        Answers to the booking form do not count: the form takes any text as the name or the times,
        whatever intent the classifier guessed.
        """
        answered_faq = and_(
            turns.c.intent_name == "faq",
            turns.c.next_action == "utter_faq",
            or_(
                self._json_float("parse_data", "intent", "confidence", column=turns.c.data) < LOW_CONFIDENCE,
                self._json_float("parse_data", "response_selector", "faq", "response", "confidence", column=turns.c.data)
                < LOW_CONFIDENCE,
            ),
        )
        return and_(
            turns.c.type_name == "user",
            or_(turns.c.next_action.is_(None), ~turns.c.next_action.endswith("_form", autoescape=True)),
            or_(turns.c.intent_name == FALLBACK_INTENT, turns.c.next_action.in_(FALLBACK_ACTIONS), answered_faq),
        )

    def _conversation_summary(self):
        events = tracker_events
        is_user = events.c.type_name == "user"
        red_flag_rank = case(
            *[(events.c.intent_name == intent, LEVEL_RANKS[level]) for intent, level in RED_FLAG_INTENT_LEVELS.items()],
            # Advice the bot gave: the conversation-level triage gives it for a message whose own intent is no
            # red flag ("my back hurts" ... "and I can't feel it when I wipe").
            *[(and_(events.c.type_name == "action", events.c.action_name == action), LEVEL_RANKS[level])
              for action, level in ADVICE_RESPONSES.items()],
            else_=0,
        )
        turns = func.sum(case((is_user, 1), else_=0))
        base = (
            select(
                events.c.sender_id.label("conversation_id"),
                func.min(case((is_user, events.c.timestamp), else_=None)).label("started"),
                func.max(events.c.timestamp).label("last_activity"),
                turns.label("turns"),
                func.max(red_flag_rank).label("red_flag_rank"),
                func.max(case((is_user, self._json_str("input_channel")), else_=None)).label("channel"),
            )
            .group_by(events.c.sender_id)
            .having(turns > 0)
            .subquery("base")
        )
        flow = self._turns()
        unsure = (
            select(flow.c.sender_id, func.sum(case((self._not_understood(flow), 1), else_=0)).label("fallbacks"))
            .group_by(flow.c.sender_id)
            .subquery("unsure")
        )
        return (
            select(base, func.coalesce(unsure.c.fallbacks, 0).label("fallbacks"))
            .select_from(base.outerjoin(unsure, unsure.c.sender_id == base.c.conversation_id))
            .subquery("conversations")
        )

    def _filtered(self, flt: ConversationFilter):
        summary = self._conversation_summary()
        conditions = []
        if flt.start is not None:
            conditions.append(summary.c.last_activity >= flt.start.timestamp())
        if flt.end is not None:
            conditions.append(summary.c.started < flt.end.timestamp())
        if flt.channel:
            conditions.append(summary.c.channel == flt.channel)
        if flt.red_flag:
            conditions.append(summary.c.red_flag_rank > 0)
        if flt.red_flag_level:
            conditions.append(summary.c.red_flag_rank >= LEVEL_RANKS[flt.red_flag_level])
        if flt.fallback:
            conditions.append(summary.c.fallbacks > 0)
        if flt.booking:
            conditions.append(summary.c.conversation_id.in_(self._project_ids(select(bookings.c.conversation_id).distinct())))
        if flt.handoff:
            conditions.append(summary.c.conversation_id.in_(self._project_ids(select(handoffs.c.conversation_id).distinct())))
        if flt.negative_feedback:
            negative = select(feedback.c.conversation_id).where(feedback.c.helpful.is_(False)).distinct()
            conditions.append(summary.c.conversation_id.in_(self._project_ids(negative)))
        if flt.text and flt.text.strip():
            conditions.append(self._text_condition(summary, flt.text.strip()))
        return summary, conditions

    def _text_condition(self, summary, text: str):
        needle = text.lower()
        said = (
            select(tracker_events.c.sender_id)
            .where(tracker_events.c.type_name.in_(("user", "bot")))
            .where(func.lower(self._json_str("text")).contains(needle, autoescape=True))
            .distinct()
        )
        by_reference = self._project_ids(
            select(bookings.c.conversation_id).where(func.upper(bookings.c.reference) == text.upper())
        )
        return or_(
            summary.c.conversation_id.in_(said),
            summary.c.conversation_id == text,
            summary.c.conversation_id.in_(by_reference),
        )

    def list_conversations(self, flt: Optional[ConversationFilter] = None) -> _Tuple[List[Dict[str, Any]], int]:
        """One page of conversations (newest activity first) with their flags, and the total that match."""
        flt = flt or ConversationFilter()
        if not self.has_tracker_events():
            return [], 0
        summary, conditions = self._filtered(flt)
        statement = select(summary).where(*conditions)
        counted = select(func.count()).select_from(statement.subquery())
        page = statement.order_by(summary.c.last_activity.desc(), summary.c.conversation_id).limit(flt.limit).offset(flt.offset)
        with self.tracker_engine.connect() as connection:
            total = connection.execute(counted).scalar_one()
            rows = [dict(row._mapping) for row in connection.execute(page)]
        self._add_project_flags(rows)
        return rows, total

    def _add_project_flags(self, rows: List[Dict[str, Any]]) -> None:
        ids = [row["conversation_id"] for row in rows]
        booked: Dict[str, int] = _defaultdict(int)
        handed: Dict[str, int] = _defaultdict(int)
        negative: Dict[str, int] = _defaultdict(int)
        with self.engine.connect() as connection:
            for chunk in _chunks(ids):
                for table, counts, extra in (
                    (bookings, booked, None),
                    (handoffs, handed, None),
                    (feedback, negative, feedback.c.helpful.is_(False)),
                ):
                    statement = (
                        select(table.c.conversation_id, func.count())
                        .where(table.c.conversation_id.in_(chunk))
                        .group_by(table.c.conversation_id)
                    )
                    if extra is not None:
                        statement = statement.where(extra)
                    for conversation_id, count in connection.execute(statement):
                        counts[conversation_id] = count
        for row in rows:
            conversation_id = row["conversation_id"]
            row["red_flag_level"] = RANK_LEVELS.get(int(row.get("red_flag_rank") or 0), "NONE")
            row["bookings"] = booked[conversation_id]
            row["handoffs"] = handed[conversation_id]
            row["negative_feedback"] = negative[conversation_id]
            row["fallbacks"] = int(row.get("fallbacks") or 0)
            row["turns"] = int(row.get("turns") or 0)
            row["started_at"] = _from_ts(row.get("started"))
            row["last_activity_at"] = _from_ts(row.get("last_activity"))

    def conversation_channels(self) -> List[str]:
        if not self.has_tracker_events():
            return []
        channel = self._json_str("input_channel")
        statement = select(channel).where(tracker_events.c.type_name == "user").distinct()
        with self.tracker_engine.connect() as connection:
            return sorted(value for value in connection.execute(statement).scalars() if value)

    def conversation_events(self, conversation_id: str, types: Optional[_Sequence[str]] = None) -> List[Dict[str, Any]]:
        """Every tracker event of one conversation, oldest first, with `data` parsed."""
        if not self.has_tracker_events():
            return []
        statement = select(tracker_events).where(tracker_events.c.sender_id == conversation_id)
        if types:
            statement = statement.where(tracker_events.c.type_name.in_(list(types)))
        with self.tracker_engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(statement.order_by(tracker_events.c.id))]
        for row in rows:
            row["data"] = json.loads(row["data"]) if row["data"] else {}
        return rows

    def events_between(self, start: datetime, end: datetime, types: _Sequence[str] = ("user", "bot")) -> List[Dict[str, Any]]:
        """Tracker events in [start, end) of the given types (for export), by conversation then time."""
        if not self.has_tracker_events():
            return []
        statement = (
            select(tracker_events)
            .where(tracker_events.c.timestamp >= start.timestamp(), tracker_events.c.timestamp < end.timestamp())
            .where(tracker_events.c.type_name.in_(list(types)))
            .order_by(tracker_events.c.sender_id, tracker_events.c.id)
        )
        with self.tracker_engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(statement)]
        for row in rows:
            row["data"] = json.loads(row["data"]) if row["data"] else {}
        return rows

    def slot_values(self, conversation_ids: _Sequence[str], slots: _Sequence[str]) -> Dict[str, _Set[str]]:
        """Values a conversation ever set for the given slots (SlotSet events keep the slot name in action_name)."""
        found: Dict[str, _Set[str]] = _defaultdict(set)
        if not self.has_tracker_events():
            return found
        with self.tracker_engine.connect() as connection:
            for chunk in _chunks(conversation_ids):
                statement = select(tracker_events.c.sender_id, tracker_events.c.data).where(
                    tracker_events.c.sender_id.in_(chunk),
                    tracker_events.c.type_name == "slot",
                    tracker_events.c.action_name.in_(list(slots)),
                )
                for sender_id, data in connection.execute(statement):
                    value = (json.loads(data) if data else {}).get("value")
                    if isinstance(value, str) and value.strip():
                        found[sender_id].add(value.strip())
        return found

    def conversation_records(self, conversation_id: str) -> Dict[str, List[Dict[str, Any]]]:
        """The project's rows for one conversation: bookings, triage events, handoffs, feedback."""
        records: Dict[str, List[Dict[str, Any]]] = {}
        with self.engine.connect() as connection:
            for name, table in (("booking", bookings), ("triage", triage_events), ("handoff", handoffs), ("feedback", feedback)):
                statement = select(table).where(table.c.conversation_id == conversation_id).order_by(table.c.id)
                records[name] = [self._clean_row(row) for row in connection.execute(statement)]
        for kind in QUEUE_TABLES:
            history = self.status_history([(kind, row["id"]) for row in records[kind]])
            for row in records[kind]:
                row["kind"] = kind
                row["level"] = row.get("level") or row.get("triage_level") or "NONE"
                row["history"] = history.get((kind, row["id"]), [])
                row["highlight"] = row["level"] in ("EMERGENCY", "URGENT") and row["status"] != "closed"
        return records

    @staticmethod
    def _clean_row(row) -> Dict[str, Any]:
        item = dict(row._mapping)
        if "created_at" in item:
            item["created_at"] = _as_utc(item["created_at"])
        if "matched" in item and isinstance(item["matched"], str):
            try:
                item["matched"] = json.loads(item["matched"])
            except ValueError:
                item["matched"] = [item["matched"]]
        return item

    def booking_names(self, conversation_ids: _Sequence[str]) -> Dict[str, _Set[str]]:
        names: Dict[str, _Set[str]] = _defaultdict(set)
        with self.engine.connect() as connection:
            for chunk in _chunks(conversation_ids):
                statement = select(bookings.c.conversation_id, bookings.c.name, bookings.c.contact).where(
                    bookings.c.conversation_id.in_(chunk)
                )
                for conversation_id, name, contact in connection.execute(statement):
                    names[conversation_id].add(name)
                    names[conversation_id].add(contact)
        return names

    # -- queue ----------------------------------------------------------------------------------
    def queue_items(
        self,
        statuses: Optional[_Sequence[str]] = None,
        start: Optional[datetime] = None,
        end: Optional[datetime] = None,
    ) -> List[Dict[str, Any]]:
        """Bookings, red-flag escalations and handoffs, EMERGENCY/URGENT open items first, then newest first."""
        items: List[Dict[str, Any]] = []
        with self.engine.connect() as connection:
            for kind, table in QUEUE_TABLES.items():
                statement = select(table)
                if statuses:
                    statement = statement.where(table.c.status.in_(list(statuses)))
                if start is not None:
                    statement = statement.where(table.c.created_at >= start.astimezone(timezone.utc))
                if end is not None:
                    statement = statement.where(table.c.created_at < end.astimezone(timezone.utc))
                if kind == "triage":
                    statement = statement.where(table.c.level != "NONE")
                for row in connection.execute(statement):
                    item = self._clean_row(row)
                    item["kind"] = kind
                    item["level"] = item.get("level") or item.get("triage_level") or "NONE"
                    items.append(item)
        history = self.status_history([(item["kind"], item["id"]) for item in items])
        for item in items:
            item["history"] = history.get((item["kind"], item["id"]), [])
            item["last_change"] = item["history"][-1] if item["history"] else None
            item["highlight"] = item["level"] in ("EMERGENCY", "URGENT") and item["status"] != "closed"
        items.sort(key=lambda item: item["created_at"].timestamp(), reverse=True)
        items.sort(key=lambda item: (not item["highlight"], -LEVEL_RANKS.get(item["level"], 0) if item["highlight"] else 0))
        return items

    def queue_item(self, kind: str, item_id: int) -> Optional[Dict[str, Any]]:
        table = QUEUE_TABLES[kind]
        with self.engine.connect() as connection:
            row = connection.execute(select(table).where(table.c.id == item_id)).first()
        if row is None:
            return None
        item = self._clean_row(row)
        item["kind"] = kind
        item["history"] = self.status_history([(kind, item_id)]).get((kind, item_id), [])
        return item

    def status_history(self, items: _Sequence[_Tuple[str, int]]) -> Dict[_Tuple[str, int], List[Dict[str, Any]]]:
        by_kind: Dict[str, List[int]] = _defaultdict(list)
        for kind, item_id in items:
            by_kind[kind].append(item_id)
        history: Dict[_Tuple[str, int], List[Dict[str, Any]]] = _defaultdict(list)
        with self.engine.connect() as connection:
            for kind, ids in by_kind.items():
                for chunk in _chunks(ids):
                    statement = (
                        select(status_changes)
                        .where(status_changes.c.item_kind == kind, status_changes.c.item_id.in_(chunk))
                        .order_by(status_changes.c.id)
                    )
                    for row in connection.execute(statement):
                        change = dict(row._mapping)
                        change["changed_at"] = _as_utc(change["changed_at"])
                        history[(kind, change["item_id"])].append(change)
        return history

    # -- feedback -------------------------------------------------------------------------------
    def feedback_summary(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> List[Dict[str, Any]]:
        """Per FAQ topic: answers rated, how many did not help; worst first."""
        not_helpful = func.sum(case((feedback.c.helpful.is_(False), 1), else_=0))
        statement = select(feedback.c.topic, func.count().label("total"), not_helpful.label("not_helpful")).group_by(
            feedback.c.topic
        )
        if start is not None:
            statement = statement.where(feedback.c.created_at >= start.astimezone(timezone.utc))
        if end is not None:
            statement = statement.where(feedback.c.created_at < end.astimezone(timezone.utc))
        with self.engine.connect() as connection:
            rows = [
                {"topic": r.topic, "total": int(r.total), "not_helpful": int(r.not_helpful or 0)}
                for r in connection.execute(statement)
            ]
        for row in rows:
            row["helpful"] = row["total"] - row["not_helpful"]
            row["not_helpful_rate"] = row["not_helpful"] / row["total"] if row["total"] else 0.0
        rows.sort(key=lambda row: (-row["not_helpful_rate"], -row["total"], row["topic"]))
        return rows

    def recent_negative_feedback(self, limit: int = 20) -> List[Dict[str, Any]]:
        statement = (
            select(feedback).where(feedback.c.helpful.is_(False)).order_by(feedback.c.created_at.desc(), feedback.c.id.desc()).limit(limit)
        )
        with self.engine.connect() as connection:
            return [self._clean_row(row) for row in connection.execute(statement)]

    # -- insight --------------------------------------------------------------------------------
    def insight(self, start: datetime, end: datetime) -> Dict[str, Any]:
        """Counts for [start, end): conversation start times, FAQ topics answered, fallback rate, red flags, bookings."""
        result: Dict[str, Any] = {
            "conversation_starts": [],
            "topics": [],
            "typed_messages": 0,
            "fallback_messages": 0,
            "red_flags": {level: {"messages": 0, "conversations": 0} for level in ("EMERGENCY", "URGENT", "BOOKING")},
            "booking_times": [],
            "bookings_by_status": {status: 0 for status in QUEUE_STATUSES},
        }
        low, high = start.timestamp(), end.timestamp()
        events = tracker_events
        in_range = and_(events.c.timestamp >= low, events.c.timestamp < high)
        if self.has_tracker_events():
            summary = self._conversation_summary()
            starts = select(summary.c.started).where(summary.c.started >= low, summary.c.started < high)
            utter_action = self._json_str("metadata", "utter_action")
            topics = (
                select(utter_action.label("response"), func.count().label("answers"))
                .where(in_range, events.c.type_name == "bot", utter_action.like("utter_faq/%"))
                .group_by(utter_action)
                .order_by(func.count().desc(), utter_action)
                .limit(10)
            )
            flow = self._turns()
            typed = and_(
                flow.c.type_name == "user",
                flow.c.timestamp >= low,
                flow.c.timestamp < high,
                ~func.coalesce(self._json_str("text", column=flow.c.data), "").startswith("/"),  # not a button
                or_(flow.c.next_action.is_(None), ~flow.c.next_action.endswith("_form", autoescape=True)),
            )
            messages = select(func.count(), func.sum(case((self._not_understood(flow), 1), else_=0))).where(typed)
            red_flags = (
                select(events.c.intent_name, func.count(), func.count(distinct(events.c.sender_id)))
                .where(in_range, events.c.type_name == "user", events.c.intent_name.in_(list(RED_FLAG_INTENT_LEVELS)))
                .group_by(events.c.intent_name)
            )
            with self.tracker_engine.connect() as connection:
                result["conversation_starts"] = [_from_ts(value) for value in connection.execute(starts).scalars()]
                result["topics"] = [
                    {"topic": response[len("utter_faq/"):], "answers": int(answers)}
                    for response, answers in connection.execute(topics)
                ]
                total, fallbacks = connection.execute(messages).one()
                result["typed_messages"], result["fallback_messages"] = int(total or 0), int(fallbacks or 0)
                for intent, count, conversations in connection.execute(red_flags):
                    result["red_flags"][RED_FLAG_INTENT_LEVELS[intent]] = {"messages": int(count), "conversations": int(conversations)}
        with self.engine.connect() as connection:
            statement = select(bookings.c.created_at, bookings.c.status).where(
                bookings.c.created_at >= start.astimezone(timezone.utc), bookings.c.created_at < end.astimezone(timezone.utc)
            )
            for created_at, status in connection.execute(statement):
                result["booking_times"].append(_as_utc(created_at))
                result["bookings_by_status"][status] = result["bookings_by_status"].get(status, 0) + 1
        return result

    # -- audit trail ------------------------------------------------------------------------------
    def record_audit(self, action: str, username: Optional[str], role: Optional[str], target: str = "",
                     detail: str = "", address: str = "") -> None:
        self.ensure_schema()
        with self.engine.begin() as connection:
            connection.execute(insert(audit_log).values(
                at=utcnow(), username=(username or "")[:100], role=role, action=action, target=target[:255],
                detail=detail, address=address[:64],
            ))

    def audit_entries(self, limit: int = 500) -> List[Dict[str, Any]]:
        """The newest entries first."""
        self.ensure_schema()
        statement = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(statement)]
        for row in rows:
            row["at"] = _as_utc(row["at"])
        return rows

    # -- console sessions ---------------------------------------------------------------------------
    def end_session(self, session_key: str, keep_for: timedelta) -> None:
        """Refuse this session from now on; forget ended sessions older than `keep_for` (they have expired)."""
        self.ensure_schema()
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(delete(ended_sessions).where(ended_sessions.c.ended_at < now - keep_for))
            if connection.execute(select(ended_sessions.c.session_key).where(ended_sessions.c.session_key == session_key)).first() is None:
                connection.execute(insert(ended_sessions).values(session_key=session_key, ended_at=now))

    def session_ended(self, session_key: str) -> bool:
        self.ensure_schema()
        with self.engine.connect() as connection:
            statement = select(ended_sessions.c.session_key).where(ended_sessions.c.session_key == session_key)
            return connection.execute(statement).first() is not None

    # -- staff accounts ---------------------------------------------------------------------------
    def create_staff_user(self, username: str, password_hash: str, role: str = "front_desk") -> None:
        """Raises ValueError when the name is taken."""
        self.ensure_schema()
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(staff_users).values(username=username, password_hash=password_hash, role=role, created_at=utcnow())
                )
        except IntegrityError as error:
            raise ValueError(f"user {username!r} already exists") from error

    def get_staff_user(self, username: str) -> Optional[Dict[str, Any]]:
        self.ensure_schema()
        with self.engine.connect() as connection:
            row = connection.execute(select(staff_users).where(staff_users.c.username == username)).first()
        return dict(row._mapping) if row is not None else None

    def list_staff_users(self) -> List[Dict[str, Any]]:
        self.ensure_schema()
        statement = select(staff_users.c.username, staff_users.c.role, staff_users.c.created_at).order_by(staff_users.c.username)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]

    def set_staff_password(self, username: str, password_hash: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                update(staff_users).where(staff_users.c.username == username).values(password_hash=password_hash)
            )
        return result.rowcount > 0

    def set_staff_role(self, username: str, role: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(update(staff_users).where(staff_users.c.username == username).values(role=role))
        return result.rowcount > 0

    def delete_staff_user(self, username: str) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(delete(staff_users).where(staff_users.c.username == username))
        return result.rowcount > 0

    # -- retention ------------------------------------------------------------------------------
    def delete_conversations_inactive_since(self, cutoff: datetime, dry_run: bool = False) -> Dict[str, int]:
        """Delete whole conversations whose last activity is before `cutoff`.

        A conversation is everything with one sender id: all its tracker events, its bookings,
        triage events, handoffs, feedback, and the status changes of those queue items. A
        conversation with any event at or after the cutoff is kept whole, old rows included.
        Project rows whose tracker events are already gone count as last active when created.
        With dry_run, counts what would go and changes nothing.
        """
        self.ensure_schema()
        cutoff_utc = cutoff.astimezone(timezone.utc)
        cutoff_ts = cutoff_utc.timestamp()
        stale: List[str] = []
        active: _Set[str] = set()
        if self.has_tracker_events():
            events = tracker_events
            with self.tracker_engine.connect() as connection:
                stale = list(
                    connection.execute(
                        select(events.c.sender_id).group_by(events.c.sender_id).having(func.max(events.c.timestamp) < cutoff_ts)
                    ).scalars()
                )
                active = set(
                    connection.execute(select(events.c.sender_id).where(events.c.timestamp >= cutoff_ts).distinct()).scalars()
                )
        counts: Dict[str, int] = {name: 0 for name in ("events", "bookings", "triage_events", "handoffs", "feedback", "status_changes")}
        project_tables = (bookings, triage_events, handoffs, feedback)
        with self.engine.connect() as connection:
            old_rows: _Set[str] = set()
            for table in project_tables:
                old_rows.update(
                    connection.execute(select(table.c.conversation_id).where(table.c.created_at < cutoff_utc).distinct()).scalars()
                )
        doomed = sorted((old_rows | set(stale)) - active)
        transaction_engines = [self.engine] if self._same_database else [self.engine, self.tracker_engine]
        connections = [engine.connect() for engine in transaction_engines]
        transactions = [connection.begin() for connection in connections]
        project, tracker = connections[0], connections[-1]
        try:
            kinds = {bookings.name: "booking", triage_events.name: "triage", handoffs.name: "handoff"}
            for chunk in _chunks(doomed):
                for table in project_tables:
                    kind = kinds.get(table.name)
                    if kind is not None:
                        ids = list(project.execute(select(table.c.id).where(table.c.conversation_id.in_(chunk))).scalars())
                        for id_chunk in _chunks(ids):
                            result = project.execute(
                                delete(status_changes).where(status_changes.c.item_kind == kind, status_changes.c.item_id.in_(id_chunk))
                            )
                            counts["status_changes"] += result.rowcount
                    result = project.execute(delete(table).where(table.c.conversation_id.in_(chunk)))
                    counts[table.name] += result.rowcount
            if stale:
                for chunk in _chunks(sorted(set(stale) - active)):
                    result = tracker.execute(delete(tracker_events).where(tracker_events.c.sender_id.in_(chunk)))
                    counts["events"] += result.rowcount
            counts["conversations"] = len(doomed)
            for transaction in transactions:
                transaction.rollback() if dry_run else transaction.commit()
        except Exception:
            for transaction in transactions:
                if transaction.is_active:
                    transaction.rollback()
            raise
        finally:
            for connection in connections:
                connection.close()
        return counts
