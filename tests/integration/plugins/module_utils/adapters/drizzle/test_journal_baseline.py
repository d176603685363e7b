"""A hand-made baseline against the real drizzle-orm: a tracking row that holds an entry's hash IS that entry.

A database built with ``drizzle-kit push`` and then given a baseline row by hand: the sha256 of 0000's file
and ``created_at`` = the time of the insert, later than the ``when`` of the entries after it. drizzle-orm
considers everything applied and silently skips those entries; the collection agrees on what drizzle-orm
will do (nothing pending), reports each skipped entry as ``out_of_order`` naming the row that hides it and
the UPDATE that fixes it, and never runs 0000 again, whichever way the user goes on.
"""

import hashlib
import os

import pytest

from harness.drizzle_gen import drizzle_adapter, generate, read_journal, tracking_rows

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.journal import split_statements

pytestmark = pytest.mark.peer


def push_and_baseline(folder, db, tag, created_at):
    """What `drizzle-kit push` leaves (the schema of ``tag``, no tracking rows) plus a hand-written baseline row."""
    with open(os.path.join(folder, tag + '.sql'), 'rb') as fh:
        raw = fh.read()
    for stmt in split_statements(raw.decode('utf-8')):
        db.execute(stmt)
    db.execute('CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations '
               '(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
    db.execute('INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES (%s, %s)',
               (hashlib.sha256(raw).hexdigest(), created_at))


def read(tmp_path, db):
    conn = db.conn()
    try:
        adapter = drizzle_adapter(tmp_path, db.url)
        return adapter, adapter.read_state(conn)
    finally:
        conn.close()


@pytest.fixture
def baseline(tmp_path, fresh_db):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 3)
    whens = [e['when'] for e in read_journal(folder)['entries']]
    inserted = whens[-1] + 86400000  # the day after the last migration was generated
    push_and_baseline(folder, fresh_db, tags[0], inserted)
    return folder, tags, whens, inserted


def test_baseline_row_is_its_entry_and_the_skipped_ones_are_reported(tmp_path, fresh_db, baseline, drizzle_peer):
    folder, tags, whens, inserted = baseline
    adapter, state = read(tmp_path, fresh_db)
    peer = drizzle_peer.status(folder, fresh_db.url)
    # agree with drizzle-orm on what it will do: nothing
    assert state.pending == peer['pending'] == []
    assert state.applied == [tags[0]] and state.current == [tags[0]]
    assert sorted({p['code'] for p in state.problems}) == ['out_of_order']
    messages = [p['message'] for p in state.problems]
    assert len(messages) == 2
    for tag, when in zip(tags[1:], whens[1:]):
        (msg,) = [m for m in messages if m.startswith(tag)]
        assert 'skips it silently' in msg and 'tracking row id 1' in msg and str(inserted) in msg
        assert '(when %d)' % when in msg
        assert 'SET created_at = %d WHERE id = 1' % whens[0] in msg
    conn = fresh_db.conn()
    try:
        with pytest.raises(PlanError) as info:
            adapter.plan(state, 'head')
    finally:
        conn.close()
    assert info.value.code == 'out_of_order' and 'SET created_at = %d WHERE id = 1' % whens[0] in str(info.value)


@pytest.mark.parametrize('way', ['allow_out_of_order', 'fix_row_then_collection', 'fix_row_then_drizzle'])
def test_never_runs_0000_again_and_ends_like_drizzle(tmp_path, fresh_db, make_db, baseline, drizzle_peer, way):
    folder, tags, whens, inserted = baseline
    adapter, state = read(tmp_path, fresh_db)
    conn = fresh_db.conn()
    try:
        if way == 'allow_out_of_order':
            plan = adapter.plan(state, 'head', {'allow_out_of_order': True})
            assert plan.steps == tags[1:]
            result = adapter.apply(conn, plan, {'allow_out_of_order': True})
            assert result.applied == tags[1:]
        else:
            fresh_db.execute('UPDATE drizzle.__drizzle_migrations SET created_at = %s WHERE id = 1', (whens[0],))
            state = adapter.read_state(conn)
            assert state.problems == []
            assert state.pending == drizzle_peer.status(folder, fresh_db.url)['pending'] == tags[1:]
            if way == 'fix_row_then_collection':
                result = adapter.apply(conn, adapter.plan(state, 'head'), {})
                assert result.applied == tags[1:]
            else:
                drizzle_peer.migrate(folder, fresh_db.url)
        after = adapter.read_state(conn)
    finally:
        conn.close()
    assert after.problems == [] and after.pending == [] and after.applied == tags
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []
    rows = tracking_rows(fresh_db)
    assert [r[2] for r in rows] == [whens[0] if way != 'allow_out_of_order' else inserted] + whens[1:]
    # the same schema as drizzle-orm alone makes
    reference = make_db()
    drizzle_peer.migrate(folder, reference.url)
    assert fresh_db.schema_dump() == reference.schema_dump()
    assert [r[1] for r in rows] == [r[1] for r in tracking_rows(reference)]
