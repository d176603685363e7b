"""Shared fixtures: real PostgreSQL servers, the drizzle peer, the collection on sys.path."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness.ansible import ensure_collection_link  # noqa: E402
from harness.pg import Database, PgHarnessError, PgServer  # noqa: E402

# make `ansible_collections.homelab.migrations` importable for unit tests of module_utils
sys.path.insert(0, ensure_collection_link())

from harness.drizzle_peer import drizzle_peer  # noqa: E402,F401  # pylint: disable=unused-import


def _start(dsn=None):
    try:
        server = PgServer(dsn=dsn)
        server.start()
        server.setup_roles()
    except PgHarnessError as exc:
        pytest.exit(str(exc), returncode=3)
    return server


@pytest.fixture(scope='session')
def pg():
    """The session's PostgreSQL server (a throwaway cluster, or HOMELAB_TEST_PG_DSN)."""
    server = _start(os.environ.get('HOMELAB_TEST_PG_DSN'))
    yield server
    server.destroy()


@pytest.fixture
def fresh_db(pg):
    """A new empty database owned by the password role; dropped afterwards."""
    db = Database(pg, pg.create_database())
    yield db
    pg.drop_database(db.name)


@pytest.fixture
def make_db(pg):
    """Factory for extra fresh databases in one test."""
    made = []

    def factory():
        db = Database(pg, pg.create_database())
        made.append(db)
        return db
    yield factory
    for db in made:
        pg.drop_database(db.name)


@pytest.fixture
def own_cluster():
    """A cluster of the test's own, which it may stop, kill or restart."""
    server = _start()
    yield server
    server.destroy()
