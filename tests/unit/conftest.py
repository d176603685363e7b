"""Unit tests need no PostgreSQL server: a test under tests/unit that asks for one fails before it starts.

The server fixtures are tests/conftest.py's ``pg``, ``fresh_db``, ``make_db`` and ``own_cluster``; a fixture built on
one of them counts too (pytest's fixture closure of the test is checked), and so does a test that starts a cluster
itself (``harness.pg.PgServer.start``). Such a test belongs in tests/integration, which mirrors plugins/ the same
way. tests/unit/test_no_server.py proves the guard fires.
"""

import pytest

from harness.pg import PgServer

SERVER_FIXTURES = frozenset(('pg', 'fresh_db', 'make_db', 'own_cluster'))
MOVE_IT = 'it needs a PostgreSQL server, so it is not a unit test: move it to tests/integration'


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Fail a unit test that asks for a server fixture, before any fixture is set up."""
    wanted = sorted(SERVER_FIXTURES.intersection(getattr(item, 'fixturenames', ())))
    if wanted:
        pytest.fail('%s asks for %s: %s' % (item.nodeid, ', '.join(wanted), MOVE_IT), pytrace=False)


@pytest.fixture(autouse=True)
def _no_server_started(monkeypatch):
    """A unit test that starts a cluster of its own fails at the start."""
    def refuse(server):
        pytest.fail('a unit test started a PostgreSQL server (PgServer.start): %s' % MOVE_IT, pytrace=False)
    monkeypatch.setattr(PgServer, 'start', refuse)
