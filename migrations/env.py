"""Alembic environment: the database is settings.database_url (DATABASE_URL); the model is storage.metadata."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from clinicbot.settings import load_settings
from clinicbot.storage import make_engine, metadata

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def include_object(obj, name, type_, reflected, compare_to):
    """Only the project's tables: never touch Rasa's `events` (or anything else sharing the database)."""
    if type_ == "table" and reflected and compare_to is None:
        return False
    return True


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        render_as_batch=True,  # SQLite can only ALTER by copying the table; batch mode does that
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=load_settings().database_url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (e.g. a test) passed its own connection
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
