"""The drizzle adapter against a real (fresh) PostgreSQL database: journal checks, the read side, targets, options,
preview and apply. The server-free parts: tests/unit/plugins/module_utils/adapters/drizzle/."""

import json
import os

import psycopg2
import pytest

from harness.drizzle_gen import generate, read_journal

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import adapter as dz
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import history, sql
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError, PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl


def make_adapter(root, url, **extra):
    spec = dict(name='svc', tool='drizzle', path=str(root), migrations_dir='migrations',
                migrations_table='__drizzle_migrations', migrations_schema='drizzle')
    spec.update(extra)
    return dz.DrizzleAdapter(spec, DbUrl(url))


@pytest.fixture
def conn(fresh_db):
    c = fresh_db.conn()
    yield c
    c.close()


# ------------------------------------------------------------------------------------- journals
def _journal(root, data=None, raw=None):
    folder = root / 'migrations'
    (folder / 'meta').mkdir(parents=True, exist_ok=True)
    path = folder / 'meta' / '_journal.json'
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(data))
    return str(path)


def _entry(tag, when):
    return {'idx': 0, 'version': '7', 'when': when, 'tag': tag, 'breakpoints': True}


BAD_JOURNALS = {
    'empty file': (None, b'', 'is empty'),
    'whitespace': (None, b'  \n', 'is empty'),
    'not json': (None, b'{"entries": [', 'not valid JSON'),
    'not utf-8': (None, b'{"entries": [], "x": "\xe9"}', 'not UTF-8'),
    'not an object': ([], None, 'JSON object'),
    'no entries': ({'version': '7'}, None, '"entries" must be a list'),
    'entries not a list': ({'entries': {'tag': 'x'}}, None, '"entries" must be a list'),
    'entry not an object': ({'entries': ['0000_x']}, None, 'entries[0] is not an object'),
    'tag not a string': ({'entries': [_entry(7, 1)]}, None, 'no string "tag"'),
    'tag missing': ({'entries': [{'when': 1}]}, None, 'no string "tag"'),
    'tag with slash': ({'entries': [_entry('../../etc/passwd', 1)]}, None, 'points outside'),
    'tag with backslash': ({'entries': [_entry('a\\b', 1)]}, None, 'points outside'),
    'tag with dots': ({'entries': [_entry('..', 1)]}, None, 'points outside'),
    'absolute tag': ({'entries': [_entry('/tmp/x', 1)]}, None, 'points outside'),
    'when string': ({'entries': [_entry('0000_a', '1700000000000')]}, None, '"when" must be an integer'),
    'when float': ({'entries': [_entry('0000_a', 1.5)]}, None, '"when" must be an integer'),
    'when bool': ({'entries': [_entry('0000_a', True)]}, None, '"when" must be an integer'),
    'when missing': ({'entries': [{'tag': '0000_a'}]}, None, '"when" must be an integer'),
    'when too big': ({'entries': [_entry('0000_a', 2 ** 60)]}, None, 'outside'),
    'duplicate tags': ({'entries': [_entry('0000_a', 1), _entry('0000_a', 2)]}, None, "repeats tag '0000_a'"),
}


@pytest.mark.parametrize('case', sorted(BAD_JOURNALS))
def test_bad_journal_is_bad_config_naming_the_file(tmp_path, fresh_db, conn, case):
    data, raw, words = BAD_JOURNALS[case]
    path = _journal(tmp_path, data=data, raw=raw)
    state = make_adapter(tmp_path, fresh_db.url).read_state(conn)
    codes = [p['code'] for p in state.problems]
    assert codes == ['bad_config'], state.problems
    message = state.problems[0]['message']
    assert path in message and words in message
    assert state.pending == [] and state.history == []
    with pytest.raises(PlanError) as info:
        make_adapter(tmp_path, fresh_db.url).plan(state, 'head')
    assert info.value.code == 'bad_config' and path in str(info.value)


def test_missing_journal_and_missing_dir(tmp_path, fresh_db, conn):
    state = make_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert state.problems[0]['code'] == 'bad_config'
    assert 'does not exist' in state.problems[0]['message']
    assert str(tmp_path / 'migrations') in state.problems[0]['message']
    (tmp_path / 'migrations').mkdir()
    state = make_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert state.problems[0]['code'] == 'bad_config'
    assert str(tmp_path / 'migrations' / 'meta' / '_journal.json') in state.problems[0]['message']
    assert 'not found' in state.problems[0]['message']


def test_several_bad_entries_are_all_named(tmp_path, fresh_db, conn):
    _journal(tmp_path, {'entries': [_entry('0000_a', 1), _entry('0001/b', 2), _entry('0002_c', 'x')]})
    message = make_adapter(tmp_path, fresh_db.url).read_state(conn).problems[0]['message']
    assert 'entries[1]' in message and 'entries[2]' in message


# ------------------------------------------------------------------------------------ read side
def test_nothing_applied_reads_without_writing(tmp_path, fresh_db, conn):
    tags = generate(str(tmp_path / 'migrations'), 3)
    before = fresh_db.schema_dump()
    state = make_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert state.current == [] and state.applied == []
    assert state.pending == tags and state.history == tags and state.heads == [tags[-1]]
    assert state.problems == []
    assert fresh_db.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'drizzle'")[0][0] == 0
    assert fresh_db.schema_dump() == before


def test_old_journal_and_timestamp_tags(tmp_path, fresh_db, conn):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 4, style='timestamp', version='5')
    data = read_journal(folder)
    assert data['version'] == '5' and data['dialect'] == 'pg'
    assert tags[0].startswith('20231114')
    adapter = make_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    assert state.pending == tags and state.problems == []
    result = adapter.apply(conn, adapter.plan(state, tags[1]))
    assert result.applied == tags[:2]
    state = adapter.read_state(conn)
    assert state.applied == tags[:2] and state.current == [tags[1]] and state.pending == tags[2:]


def test_custom_table_and_schema_names_are_quoted(tmp_path, fresh_db, conn):
    tags = generate(str(tmp_path / 'migrations'), 2)
    adapter = make_adapter(tmp_path, fresh_db.url, migrations_table='Mig "table"', migrations_schema='my schema')
    adapter.apply(conn, adapter.plan(adapter.read_state(conn), 'head'))
    rows = fresh_db.query('SELECT created_at FROM "my schema"."Mig ""table""" ORDER BY id')
    assert [r[0] for r in rows] == [1700000000000, 1700000001000]
    assert adapter.read_state(conn).applied == tags


def test_unreadable_tracking_table_is_an_adapter_error(tmp_path, fresh_db, conn):
    generate(str(tmp_path / 'migrations'), 1)
    fresh_db.execute('CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations (id int, hash text)')
    with pytest.raises(AdapterError) as info:
        make_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert info.value.code == 'bad_config'
    assert 'created_at' in str(info.value) and '"drizzle"."__drizzle_migrations"' in str(info.value)


def test_closed_connection_is_unreachable(tmp_path, fresh_db):
    generate(str(tmp_path / 'migrations'), 1)
    c = fresh_db.conn()
    c.close()
    with pytest.raises(AdapterError) as info:
        make_adapter(tmp_path, fresh_db.url).read_state(c)
    assert info.value.code == 'unreachable'


def test_missing_file_and_non_utf8_pending_file(tmp_path, fresh_db, conn):
    folder = tmp_path / 'migrations'
    tags = generate(str(folder), 3)
    os.unlink(str(folder / (tags[1] + '.sql')))
    (folder / (tags[2] + '.sql')).write_bytes(b'SELECT \'caf\xe9\';')
    adapter = make_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    by_code = {}
    for p in state.problems:
        by_code.setdefault(p['code'], []).append(p['message'])
    assert sorted(by_code) == ['bad_config', 'missing_file']
    assert str(folder / (tags[1] + '.sql')) in by_code['missing_file'][0]
    assert str(folder / (tags[2] + '.sql')) in by_code['bad_config'][0] and '0xe9' in by_code['bad_config'][0]
    # up to the first tag works; further needs the missing file, then the file must be UTF-8
    adapter.apply(conn, adapter.plan(state, tags[0]))
    with pytest.raises(PlanError) as info:
        adapter.plan(adapter.read_state(conn), 'head')
    assert info.value.code == 'missing_file' and tags[1] in str(info.value)
    folder.joinpath(tags[1] + '.sql').write_text('SELECT 1;')
    with pytest.raises(PlanError) as info:
        adapter.plan(adapter.read_state(conn), 'head')
    assert info.value.code == 'bad_config' and 'UTF-8' in str(info.value) and tags[2] in str(info.value)


def test_many_problems_of_one_code_are_summarised(tmp_path, fresh_db, conn):
    folder = tmp_path / 'migrations'
    tags = generate(str(folder), 15)
    for tag in tags:
        os.unlink(str(folder / (tag + '.sql')))
    state = make_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert len(state.problems) == history.MAX_LISTED
    assert '6 more' in state.problems[-1]['message']


# ------------------------------------------------------------------------------------- planning
@pytest.fixture
def five(tmp_path, fresh_db, conn):
    tags = generate(str(tmp_path / 'migrations'), 5)
    adapter = make_adapter(tmp_path, fresh_db.url)
    adapter.apply(conn, adapter.plan(adapter.read_state(conn), tags[2]))
    return adapter, tags


def test_targets(five, conn):
    adapter, tags = five
    state = adapter.read_state(conn)
    assert state.applied == tags[:3] and state.pending == tags[3:]
    cases = {
        'head': ('up', tags[3:], tags[4]),
        'heads': ('up', tags[3:], tags[4]),
        tags[3]: ('up', tags[3:4], tags[3]),
        '0004': ('up', tags[3:], tags[4]),
        tags[2]: (None, [], tags[2]),
        tags[0]: ('down', [tags[2], tags[1]], tags[0]),
        '-1': ('down', [tags[2]], tags[1]),
        '-3': ('down', [tags[2], tags[1], tags[0]], None),
        'base': ('down', [tags[2], tags[1], tags[0]], None),
    }
    for target, (direction, steps, to_rev) in cases.items():
        plan = adapter.plan(state, target)
        assert (plan.direction, plan.steps, plan.to_revision) == (direction, steps, to_rev), target
        assert plan.from_revision == tags[2]


@pytest.mark.parametrize('target,words', [
    ('-4', 'only 3 migration(s)'), ('-0', 'like -1'), ('nope', 'not a tag'), ('000', 'several migrations'),
])
def test_bad_targets(five, conn, target, words):
    adapter, _tags = five
    with pytest.raises(PlanError) as info:
        adapter.plan(adapter.read_state(conn), target)
    assert info.value.code == 'unknown_revision' and words in str(info.value)


@pytest.mark.parametrize('options,words', [
    ({'transaction': 'sometimes'}, 'transaction must be one of'),
    ({'lock_timeout': 'soon'}, 'lock_timeout'),
])
def test_bad_options(five, conn, options, words):
    adapter, _tags = five
    with pytest.raises(PlanError) as info:
        adapter.plan(adapter.read_state(conn), 'head', options)
    assert info.value.code == 'bad_config' and words in str(info.value)


def test_preview_is_what_runs(five, conn):
    adapter, tags = five
    plan = adapter.plan(adapter.read_state(conn), 'head', {'lock_timeout': '3s', 'statement_timeout': 60000})
    text = adapter.preview_sql(plan)
    assert text == plan.sql
    assert text.count('BEGIN;') == 1 and text.count('COMMIT;') == 1
    assert "SET LOCAL lock_timeout = '3s';" in text and "SET LOCAL statement_timeout = '60000ms';" in text
    assert 'CREATE SCHEMA' not in text  # the tracking table exists already
    assert '-- migration %s (%s.sql)' % (tags[3], tags[3]) in text
    result = adapter.apply(conn, plan)
    for query in result.queries:
        assert query.strip() in text
    assert any(q.startswith('INSERT INTO "drizzle"."__drizzle_migrations"') and '1700000004000' in q
               for q in result.queries)
    each = adapter.plan(adapter.read_state(conn), 'base', {'transaction': 'each'})
    assert each.sql.count('BEGIN;') == 1  # reverts always run in one transaction
    assert '-- revert %s (%s.down.sql)' % (tags[4], tags[4]) in each.sql


def test_preview_each_has_one_transaction_per_migration(tmp_path, fresh_db, conn):
    generate(str(tmp_path / 'migrations'), 3)
    adapter = make_adapter(tmp_path, fresh_db.url)
    plan = adapter.plan(adapter.read_state(conn), 'head', {'transaction': 'each'})
    assert plan.sql.count('BEGIN;') == 3 and plan.sql.count('CREATE TABLE IF NOT EXISTS') == 1
    assert plan.sql.index('CREATE SCHEMA IF NOT EXISTS "drizzle";') < plan.sql.index('-- migration')


def test_apply_with_nothing_to_do(five, conn):
    adapter, tags = five
    plan = adapter.plan(adapter.read_state(conn), tags[2])
    assert not plan.changed and plan.sql == ''
    result = adapter.apply(conn, plan)
    assert result.applied == [] and result.reverted == [] and result.queries == []
    assert conn.autocommit is True


def test_psycopg2_error_text_is_one_line(fresh_db, conn):
    with pytest.raises(psycopg2.Error) as info:
        with conn.cursor() as cur:
            cur.execute('SELECT * FROM no_such_table')
    text = sql.pg_error(info.value)
    assert '\n' not in text and 'no_such_table' in text and '42P01' in text
