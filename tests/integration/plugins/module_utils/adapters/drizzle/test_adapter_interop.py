"""Interop with the real drizzle-orm on 120 generated migrations: a database migrated partly by the adapter
and partly by drizzle-orm (either way round, either transaction mode) is identical to a drizzle-orm-only
one: tracking rows (id, hash, created_at), `pg_dump --schema-only` and table contents; afterwards neither
side finds anything pending.
"""

import pytest

from harness.drizzle_gen import (
    copy_folder,
    drizzle_adapter,
    generate,
    tracking_rows,
    truncate_journal,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

COUNT = 120
SPLIT = 57


@pytest.fixture(scope='module')
def history(tmp_path_factory):
    """The full folder, and a copy whose journal stops after SPLIT entries (an older checkout)."""
    root = tmp_path_factory.mktemp('interop')
    full = root / 'full'
    tags = generate(str(full / 'migrations'), COUNT, weird=True, crlf=(5, 50, 99))
    older = root / 'older'
    copy_folder(str(full), str(older))
    truncate_journal(str(older / 'migrations'), SPLIT)
    return {'tags': tags, 'full': full, 'older': older}


@pytest.fixture(scope='module')
def reference(history, pg, drizzle_peer):
    """A database migrated by drizzle-orm alone, in two runs like the mixed ones."""
    from harness.pg import Database
    db = Database(pg, pg.create_database())
    drizzle_peer.migrate(str(history['older'] / 'migrations'), db.url)
    drizzle_peer.migrate(str(history['full'] / 'migrations'), db.url)
    snap = {'rows': tracking_rows(db), 'schema': db.schema_dump(), 'data': db.checksums()}
    yield snap
    pg.drop_database(db.name)


def assert_same_as_reference(db, reference, history, drizzle_peer):
    rows = tracking_rows(db)
    assert len(rows) == COUNT
    assert rows == reference['rows']
    assert db.schema_dump() == reference['schema']
    assert db.checksums() == reference['data']
    folder = str(history['full'] / 'migrations')
    assert drizzle_peer.status(folder, db.url)['pending'] == []
    conn = db.conn()
    try:
        state = drizzle_adapter(history['full'], db.url).read_state(conn)
    finally:
        conn.close()
    assert state.pending == [] and state.problems == [] and state.applied == history['tags']
    # drizzle-orm's migrate() really inserts nothing more
    assert len(drizzle_peer.migrate(folder, db.url)['rows']) == COUNT


@pytest.mark.parametrize('mode', ['all', 'each'])
def test_adapter_first_then_drizzle(history, reference, fresh_db, drizzle_peer, mode):
    conn = fresh_db.conn()
    try:
        adapter = drizzle_adapter(history['older'], fresh_db.url)
        state = adapter.read_state(conn)
        assert state.pending == history['tags'][:SPLIT]
        result = adapter.apply(conn, adapter.plan(state, 'head', {'transaction': mode}))
        assert result.applied == history['tags'][:SPLIT]
    finally:
        conn.close()
    peer_status = drizzle_peer.status(str(history['full'] / 'migrations'), fresh_db.url)
    assert peer_status['pending'] == history['tags'][SPLIT:]
    drizzle_peer.migrate(str(history['full'] / 'migrations'), fresh_db.url)
    assert_same_as_reference(fresh_db, reference, history, drizzle_peer)


@pytest.mark.parametrize('mode', ['all', 'each'])
def test_drizzle_first_then_adapter(history, reference, fresh_db, drizzle_peer, mode):
    drizzle_peer.migrate(str(history['older'] / 'migrations'), fresh_db.url)
    conn = fresh_db.conn()
    try:
        adapter = drizzle_adapter(history['full'], fresh_db.url)
        state = adapter.read_state(conn)
        assert state.applied == history['tags'][:SPLIT] and state.pending == history['tags'][SPLIT:]
        plan = adapter.plan(state, 'head', {'transaction': mode})
        assert plan.from_revision == history['tags'][SPLIT - 1] and plan.to_revision == history['tags'][-1]
        result = adapter.apply(conn, plan)
        assert result.applied == history['tags'][SPLIT:]
        assert conn.autocommit is True
    finally:
        conn.close()
    assert_same_as_reference(fresh_db, reference, history, drizzle_peer)


def test_adapter_alone_with_a_tag_target_then_head(history, reference, fresh_db, drizzle_peer):
    conn = fresh_db.conn()
    try:
        adapter = drizzle_adapter(history['full'], fresh_db.url)
        adapter.apply(conn, adapter.plan(adapter.read_state(conn), history['tags'][SPLIT - 1]))
        assert drizzle_peer.status(str(history['full'] / 'migrations'), fresh_db.url)['pending'] == \
            history['tags'][SPLIT:]
        adapter.apply(conn, adapter.plan(adapter.read_state(conn), 'head'))
    finally:
        conn.close()
    assert_same_as_reference(fresh_db, reference, history, drizzle_peer)


def test_down_to_the_split_then_drizzle_brings_it_back(history, reference, fresh_db, drizzle_peer):
    """Revert with the adapter, then drizzle-orm re-applies exactly what was reverted."""
    drizzle_peer.migrate(str(history['full'] / 'migrations'), fresh_db.url)
    conn = fresh_db.conn()
    try:
        adapter = drizzle_adapter(history['full'], fresh_db.url)
        plan = adapter.plan(adapter.read_state(conn), history['tags'][SPLIT - 1])
        assert plan.direction == 'down' and plan.steps == list(reversed(history['tags'][SPLIT:]))
        result = adapter.apply(conn, plan)
        assert result.reverted == plan.steps
        state = adapter.read_state(conn)
        assert state.current == [history['tags'][SPLIT - 1]] and state.pending == history['tags'][SPLIT:]
    finally:
        conn.close()
    assert drizzle_peer.status(str(history['full'] / 'migrations'), fresh_db.url)['pending'] == \
        history['tags'][SPLIT:]
    rows = drizzle_peer.migrate(str(history['full'] / 'migrations'), fresh_db.url)['rows']
    ref = reference['rows']
    # ids of the re-applied rows moved on (the serial sequence does not go back); hash and created_at match
    assert [(r['hash'], r['created_at']) for r in rows] == [(h, c) for (_i, h, c) in ref]
    assert fresh_db.schema_dump() == reference['schema']
