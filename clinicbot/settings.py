"""Every setting the project reads from the environment, in one place.

Defaults are for a laptop: SQLite files under var/, no Redis, local development tokens off.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL and the channel secrets; see .env.example.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"


def _env(name: str, default: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


@dataclass(frozen=True)
class ClinicDetails:
    """What patients are told about the clinic. Placeholders until a clinic sets its own."""

    name: str
    phone: str
    booking_url: str
    hours: str
    email: str


@dataclass(frozen=True)
class Helplines:
    """The safeguarding replies' helplines (domain.yml `{crisis_line}` ...), as whole phrases because each
    country words them differently. US defaults, from ../shared/clinical-red-flags.md."""

    crisis_line: str
    domestic_violence_line: str
    sexual_assault_line: str

    def as_template_values(self) -> Dict[str, str]:
        return {
            "crisis_line": self.crisis_line,
            "domestic_violence_line": self.domestic_violence_line,
            "sexual_assault_line": self.sexual_assault_line,
        }


@dataclass(frozen=True)
class Settings:
    # The project's own tables (bookings, triage events, feedback, staff). SQLite file by default.
    database_url: str
    # Rasa's tracker store (conversations). Defaults to the same database as the project's tables.
    tracker_store_url: str
    # Redis for the lock store when several Rasa instances share one tracker store; unset = in-memory locks.
    redis_url: Optional[str]
    # Where booking requests wait when the database is down (one file per request).
    outbox_dir: Path
    clinic: ClinicDetails
    helplines: Helplines
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
    # Token for Rasa's HTTP API and the REST channel. Unset, the REST channel answers loopback callers only.
    rasa_auth_token: Optional[str] = None
    # Fernet key that encrypts the booking outbox at rest; unset: plain JSON, readable by the server's user only.
    outbox_key: Optional[str] = None
    # Network exposure. Everything listens on loopback unless told otherwise; a clinic puts a TLS proxy in front.
    # The Rasa server (channels, widget socket) and the web app (widget page, staff console):
    bind_host: str = "127.0.0.1"
    # The action server: only the Rasa server talks to it, with ACTION_SERVER_SECRET in a header.
    action_server_host: str = "127.0.0.1"
    # Where the Rasa server reaches the action server; unset: this machine on the action server's port.
    action_server_url: Optional[str] = None
    action_server_secret: Optional[str] = None
    # How long the Rasa server waits for one custom action (Rasa's own default is 300 s).
    action_timeout_seconds: int = 10
    # Rasa's HTTP API (trackers, events, model) stays off: the console reads the database. When a setting turns
    # it on it needs RASA_AUTH_TOKEN, and browsers may call it only from these origins.
    rasa_api_enabled: bool = False
    rasa_cors_origins: Tuple[str, ...] = ()
    # Input limits: the largest request body any server accepts, and how much of one message the bot reads.
    request_max_bytes: int = 64 * 1024
    message_max_chars: int = 2000
    # Messages one sender may send a minute, on every channel (clinicbot/channels/common.py rate_limited).
    sender_messages_per_minute: int = 20
    # "production" refuses to start with the development CONSOLE_SECRET (refuse_unsafe_production).
    deployment: str = "development"
    # Keys the pseudonyms in exports and logs. Unset: derived from CONSOLE_SECRET, so that one key cannot be used
    # to forge console sessions with the other.
    pseudonym_key: Optional[str] = None
    # How many reverse proxies (TLS terminators) in front of the web app to trust for X-Forwarded-For/-Proto: then a
    # console reached over https gets Secure cookies and HSTS. 0 (default): the headers are ignored (forgeable).
    trusted_proxies: int = 0
    # The Rasa server's public URL as the widget's browser reaches it (e.g. https://bot.clinic.example).
    # Unset: the page's own host name on the Rasa port (local development).
    widget_rasa_url: Optional[str] = None

    @property
    def pseudonym_secret(self) -> str:
        """What export and log pseudonyms are keyed with (clinicbot/console/redaction.py pseudonym)."""
        return self.pseudonym_key or self.derived_key("pseudonym").hex()

    def derived_key(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. "widget-session"), derived from CONSOLE_SECRET: one secret to set, and a
        key that leaks for one purpose reveals nothing about the others."""
        return hmac.new(self.console_secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()


# Signs console sessions and keys the export pseudonyms: a laptop default that production must replace.
DEFAULT_CONSOLE_SECRET = "dev-only-secret-change-me"


def refuse_unsafe_production(settings: Settings) -> None:
    """Every server's first step: outside development, the development CONSOLE_SECRET would let anyone forge
    console sessions and reverse the export pseudonyms, so nothing starts with it."""
    if settings.deployment not in {"development", "production"}:
        raise SystemExit(f"DEPLOYMENT must be development or production, not {settings.deployment!r}.")
    if settings.deployment == "production" and settings.console_secret == DEFAULT_CONSOLE_SECRET:
        raise SystemExit("DEPLOYMENT=production needs CONSOLE_SECRET set to a long random value (see .env.example).")


def _default_sqlite_url(filename: str) -> str:
    return f"sqlite:///{VAR_DIR / filename}"


def load_settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The settings from `environ` (default: this process's environment)."""

    def env(name: str, default: Optional[str] = None) -> Optional[str]:
        return _env(name, default, environ)

    def env_int(name: str, default: int) -> int:
        value = env(name)
        return int(value) if value is not None else default

    def env_bool(name: str, default: bool) -> bool:
        value = env(name)
        return default if value is None else value.lower() in {"1", "true", "yes", "on"}

    database_url = env("DATABASE_URL", _default_sqlite_url("clinic.db"))
    return Settings(
        database_url=database_url,
        tracker_store_url=env("TRACKER_STORE_URL", database_url),
        redis_url=env("REDIS_URL"),
        outbox_dir=Path(env("BOOKING_OUTBOX_DIR", str(VAR_DIR / "booking-outbox"))),
        outbox_key=env("BOOKING_OUTBOX_KEY"),
        clinic=ClinicDetails(
            name=env("CLINIC_NAME", "the clinic"),
            phone=env("CLINIC_PHONE", "(555) 010-0100"),
            booking_url=env("CLINIC_BOOKING_URL", "https://example.org/book"),
            hours=env("CLINIC_HOURS", "Monday to Friday, 8am to 6pm"),
            email=env("CLINIC_EMAIL", "frontdesk@example.org"),
        ),
        helplines=Helplines(
            crisis_line=env("HELPLINE_CRISIS", "call or text 988 (the Suicide & Crisis Lifeline)"),
            domestic_violence_line=env(
                "HELPLINE_DOMESTIC_VIOLENCE", "the National Domestic Violence Hotline: call 1-800-799-7233 or text START to 88788"
            ),
            sexual_assault_line=env("HELPLINE_SEXUAL_ASSAULT", "RAINN's National Sexual Assault Hotline: 1-800-656-4673"),
        ),
        console_secret=env("CONSOLE_SECRET", DEFAULT_CONSOLE_SECRET),
        console_session_minutes=env_int("CONSOLE_SESSION_MINUTES", 60),
        retention_days=env_int("RETENTION_DAYS", 365),
        telegram_token=env("TELEGRAM_TOKEN"),
        telegram_webhook_url=env("TELEGRAM_WEBHOOK_URL"),
        telegram_secret_token=env("TELEGRAM_SECRET_TOKEN"),
        twilio_account_sid=env("TWILIO_ACCOUNT_SID"),
        twilio_auth_token=env("TWILIO_AUTH_TOKEN"),
        twilio_number=env("TWILIO_NUMBER"),
        twilio_webhook_url=env("TWILIO_WEBHOOK_URL"),
        facebook_verify=env("FACEBOOK_VERIFY"),
        facebook_secret=env("FACEBOOK_SECRET"),
        facebook_page_access_token=env("FACEBOOK_PAGE_ACCESS_TOKEN"),
        slack_token=env("SLACK_TOKEN"),
        slack_channel=env("SLACK_CHANNEL"),
        slack_signing_secret=env("SLACK_SIGNING_SECRET"),
        rasa_auth_token=env("RASA_AUTH_TOKEN"),
        bind_host=env("BIND_HOST", "127.0.0.1"),
        action_server_host=env("ACTION_SERVER_HOST", "127.0.0.1"),
        action_server_url=env("ACTION_SERVER_URL"),
        action_server_secret=env("ACTION_SERVER_SECRET"),
        action_timeout_seconds=env_int("ACTION_TIMEOUT_SECONDS", 10),
        rasa_api_enabled=env_bool("RASA_API_ENABLED", False),
        rasa_cors_origins=tuple(env("RASA_CORS_ORIGINS", "").replace(",", " ").split()),
        request_max_bytes=env_int("REQUEST_MAX_BYTES", 64 * 1024),
        message_max_chars=env_int("MESSAGE_MAX_CHARS", 2000),
        sender_messages_per_minute=env_int("SENDER_MESSAGES_PER_MINUTE", 20),
        widget_rasa_url=env("WIDGET_RASA_URL"),
        trusted_proxies=env_int("TRUSTED_PROXIES", 0),
        deployment=env("DEPLOYMENT", "development").lower(),
        pseudonym_key=env("PSEUDONYM_KEY"),
    )
