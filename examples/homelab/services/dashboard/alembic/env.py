"""Alembic environment of the dashboard.

The database URL comes from the DATABASE_URL environment variable. It is given to SQLAlchemy
directly, never through ``config.set_main_option``: ConfigParser would treat a ``%`` in a
percent-encoded password as interpolation and fail (or worse, mangle it).
"""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# the revisions use plain op.* operations; there is no model metadata to autogenerate from
target_metadata = None


def installed_driver():
    """The PostgreSQL driver to use for a plain postgresql:// URL (SQLAlchemy 2.1 would pick psycopg 3)."""
    for module, driver in (('psycopg2', 'postgresql+psycopg2'), ('psycopg', 'postgresql+psycopg')):
        try:
            __import__(module)
        except ImportError:
            continue
        return driver
    return 'postgresql'


def database_url(required=True):
    """DATABASE_URL as a SQLAlchemy URL; postgres://, postgresql:// and postgresql+driver:// are accepted."""
    raw = os.environ.get('DATABASE_URL', '').strip()
    if not raw:
        if required:
            raise SystemExit('DATABASE_URL is not set: export the dashboard database URL, e.g. '
                             'DATABASE_URL=postgresql://user:password@host:5432/dashboard alembic upgrade head')
        return make_url('postgresql://')
    if raw.startswith('postgres://'):
        raw = 'postgresql://' + raw[len('postgres://'):]
    url = make_url(raw)
    if url.drivername == 'postgresql':
        url = url.set(drivername=installed_driver())
    return url


def options():
    """Optional settings from the [alembic] section of alembic.ini."""
    opts = {
        'version_table': config.get_main_option('version_table') or 'alembic_version',
        'transaction_per_migration': (config.get_main_option('transaction_per_migration') or 'false').lower()
        in ('1', 'true', 'yes', 'on'),
    }
    schema = config.get_main_option('version_table_schema')
    if schema:
        opts['version_table_schema'] = schema
    return opts


def run_migrations_offline():
    """`alembic upgrade --sql`: print the SQL instead of running it (no connection needed)."""
    context.configure(
        url=database_url(required=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={'paramstyle': 'named'},
        **options()
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, **options())
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
