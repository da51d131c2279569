"""Every setting the project reads from the environment, in one place.

Defaults are for a laptop: SQLite files under var/, no Redis, local development tokens off.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL and the channel secrets; see .env.example.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    return int(value) if value is not None else default


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ClinicDetails:
    """What patients are told about the clinic. Placeholders until a clinic sets its own."""

    name: str
    phone: str
    booking_url: str
    hours: str
    email: str


@dataclass(frozen=True)
class Settings:
    # The project's own tables (bookings, triage events, feedback, staff). SQLite file by default.
    database_url: str
    # Rasa's tracker store (conversations). Defaults to the same database as the project's tables.
    tracker_store_url: str
    # Redis for the lock store when several Rasa instances share one tracker store; unset = in-memory locks.
    redis_url: Optional[str]
    # Where booking requests wait when the database is down (one JSON file per request).
    outbox_dir: Path
    action_server_url: str
    clinic: ClinicDetails
    # Staff console
    console_secret: str
    console_session_minutes: int
    retention_days: int
    # Messaging channels: a channel whose secrets are unset is off.
    telegram_token: Optional[str] = None
    telegram_webhook_url: Optional[str] = None
    telegram_secret_token: Optional[str] = None
    twilio_account_sid: Optional[str] = None
    twilio_auth_token: Optional[str] = None
    twilio_number: Optional[str] = None
    twilio_webhook_url: Optional[str] = None
    facebook_verify: Optional[str] = None
    facebook_secret: Optional[str] = None
    facebook_page_access_token: Optional[str] = None
    slack_token: Optional[str] = None
    slack_channel: Optional[str] = None
    slack_signing_secret: Optional[str] = None
    # Token for Rasa's HTTP API and REST channel outside local development.
    rasa_auth_token: Optional[str] = None
    # The Rasa server's public URL as the widget's browser reaches it (e.g. https://bot.clinic.example).
    # Unset: the page's own host name on the Rasa port (local development).
    widget_rasa_url: Optional[str] = None


def _default_sqlite_url(filename: str) -> str:
    return f"sqlite:///{VAR_DIR / filename}"


def load_settings() -> Settings:
    database_url = _env("DATABASE_URL", _default_sqlite_url("clinic.db"))
    return Settings(
        database_url=database_url,
        tracker_store_url=_env("TRACKER_STORE_URL", database_url),
        redis_url=_env("REDIS_URL"),
        outbox_dir=Path(_env("BOOKING_OUTBOX_DIR", str(VAR_DIR / "booking-outbox"))),
        action_server_url=_env("ACTION_SERVER_URL", "http://localhost:5055/webhook"),
        clinic=ClinicDetails(
            name=_env("CLINIC_NAME", "the clinic"),
            phone=_env("CLINIC_PHONE", "(555) 010-0100"),
            booking_url=_env("CLINIC_BOOKING_URL", "https://example.org/book"),
            hours=_env("CLINIC_HOURS", "Monday to Friday, 8am to 6pm"),
            email=_env("CLINIC_EMAIL", "frontdesk@example.org"),
        ),
        console_secret=_env("CONSOLE_SECRET", "dev-only-secret-change-me"),
        console_session_minutes=_env_int("CONSOLE_SESSION_MINUTES", 60),
        retention_days=_env_int("RETENTION_DAYS", 365),
        telegram_token=_env("TELEGRAM_TOKEN"),
        telegram_webhook_url=_env("TELEGRAM_WEBHOOK_URL"),
        telegram_secret_token=_env("TELEGRAM_SECRET_TOKEN"),
        twilio_account_sid=_env("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=_env("TWILIO_AUTH_TOKEN"),
        twilio_number=_env("TWILIO_NUMBER"),
        twilio_webhook_url=_env("TWILIO_WEBHOOK_URL"),
        facebook_verify=_env("FACEBOOK_VERIFY"),
        facebook_secret=_env("FACEBOOK_SECRET"),
        facebook_page_access_token=_env("FACEBOOK_PAGE_ACCESS_TOKEN"),
        slack_token=_env("SLACK_TOKEN"),
        slack_channel=_env("SLACK_CHANNEL"),
        slack_signing_secret=_env("SLACK_SIGNING_SECRET"),
        rasa_auth_token=_env("RASA_AUTH_TOKEN"),
        widget_rasa_url=_env("WIDGET_RASA_URL"),
    )
