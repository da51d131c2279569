"""Rasa's tracker and lock stores, configured from clinicbot.settings instead of literal values in endpoints.yml.

endpoints.yml names these classes; DATABASE_URL / TRACKER_STORE_URL and REDIS_URL choose the backends:
SQLite file by default, PostgreSQL in production; in-memory locks by default, Redis when several Rasa
instances share one tracker store.
"""
from __future__ import annotations

from typing import Any, Optional

import rasa.core.actions.action
import sqlalchemy as sa
from rasa.core.lock_store import InMemoryLockStore, LockStore, RedisLockStore
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from clinicbot.settings import load_settings
from clinicbot.storage import make_engine


class ConfiguredSQLTrackerStore(SQLTrackerStore):
    def __init__(self, domain=None, host: Optional[str] = None, event_broker=None, **kwargs: Any) -> None:
        settings = load_settings()
        # Rasa 3.6 waits up to 300 s for the action server and has no setting for it, while a conversation's lock
        # lasts 60 s: a hung action server would hold the patient's turn (and the emergency advice of their next
        # message) for five minutes. RemoteAction reads this module constant at every call. The tracker store is
        # built once when the Rasa server starts, so this is where the server's own settings are applied.
        rasa.core.actions.action.DEFAULT_REQUEST_TIMEOUT = settings.action_timeout_seconds
        url = make_url(settings.tracker_store_url)
        if url.drivername.startswith("sqlite"):
            # Create the folder, and turn on WAL, before Rasa opens the file.
            make_engine(str(url)).dispose()
        super().__init__(
            domain=domain,
            dialect=url.drivername,
            host=url.host,
            port=url.port,
            db=url.database,
            username=url.username,
            password=url.password,
            event_broker=event_broker,
            query=dict(url.query) or None,
        )
        # Rasa's engine, again with pre-ping (a PostgreSQL restart costs no patient's turn) and hidden parameters (a
        # database error never logs what a patient wrote).
        rasa_engine = self.engine
        self.engine = sa.create_engine(rasa_engine.url, pool_pre_ping=True, hide_parameters=True,
                                       **create_engine_kwargs(rasa_engine.url))
        rasa_engine.dispose()
        self.sessionmaker = sessionmaker(bind=self.engine)


class ConfiguredLockStore:
    """Redis locks when REDIS_URL is set, in-memory locks otherwise."""

    def __new__(cls, endpoint_config=None) -> LockStore:  # type: ignore[misc]
        redis_url = load_settings().redis_url
        if not redis_url:
            return InMemoryLockStore()
        url = make_url(redis_url)
        return RedisLockStore(
            host=url.host or "localhost",
            port=url.port or 6379,
            db=int(url.database or 1),
            username=url.username,
            password=url.password,
            key_prefix="pelvic_health",
        )
