"""tests/unit/conftest.py's rule that unit tests need no PostgreSQL server can fail: a throwaway test tree with
that conftest and stand-in server fixtures is run by pytest; every test that asks for a server (directly, through
a fixture built on one, or by starting a cluster itself) fails, the server-free one passes, and no stand-in
server fixture ever runs."""

import os
import shutil
import subprocess
import sys

from harness.ansible import REPO

TESTS = os.path.join(REPO, 'tests')

STAND_INS = '''
import sys
sys.path.insert(0, %(tests)r)

import pytest


@pytest.fixture(scope='session')
def pg():
    open(%(ran)r, 'a').write('pg\\n')
    return 'a server'


@pytest.fixture
def fresh_db(pg):
    open(%(ran)r, 'a').write('fresh_db\\n')
    return 'a database'
'''

TESTS_OF_THE_GUARD = '''
import pytest

from harness.pg import PgServer


@pytest.fixture
def seeded(fresh_db):
    return fresh_db


def test_needs_nothing(tmp_path):
    assert tmp_path.is_dir()


def test_asks_for_a_database(fresh_db):
    pass


def test_uses_a_fixture_built_on_one(seeded):
    pass


def test_starts_a_cluster_itself():
    PgServer.start(None)
'''


def test_a_unit_test_that_needs_a_server_fails(tmp_path):
    ran = tmp_path / 'fixtures-that-ran'
    unit = tmp_path / 'tests' / 'unit'
    unit.mkdir(parents=True)
    (tmp_path / 'pytest.ini').write_text('[pytest]\n')
    (tmp_path / 'tests' / 'conftest.py').write_text(STAND_INS % dict(tests=TESTS, ran=str(ran)))
    shutil.copy(os.path.join(TESTS, 'unit', 'conftest.py'), str(unit / 'conftest.py'))
    (unit / 'test_guarded.py').write_text(TESTS_OF_THE_GUARD)
    out = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rA', '-p', 'no:cacheprovider', 'tests/unit'],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert '1 passed' in text and '2 errors' in text and '1 failed' in text, text
    assert 'PASSED tests/unit/test_guarded.py::test_needs_nothing' in text
    assert 'test_asks_for_a_database asks for fresh_db, pg: it needs a PostgreSQL server' in text
    assert 'test_uses_a_fixture_built_on_one asks for fresh_db, pg: it needs a PostgreSQL server' in text
    assert 'a unit test started a PostgreSQL server (PgServer.start)' in text
    assert not ran.exists(), ran.read_text()
