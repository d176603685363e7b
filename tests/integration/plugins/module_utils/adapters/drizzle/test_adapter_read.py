"""Drizzle read side against the real drizzle-orm migrator (the drizzle_peer fixture) and real PostgreSQL.

The reference for "pending" is what drizzle-orm's next migrate() really inserts: each test runs the
peer's migrate() after reading our state and compares the rows it added with our pending list.
"""

import os
import shutil

import pytest

from harness.drizzle_gen import (
    drizzle_adapter,
    generate,
    journal_entry,
    read_journal,
    tracking_rows,
    truncate_journal,
    write_journal,
)
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError

pytestmark = pytest.mark.peer


@pytest.fixture
def conn(fresh_db):
    c = fresh_db.conn()
    yield c
    c.close()


def codes(state):
    return sorted({p['code'] for p in state.problems})


def messages(state, code):
    return [p['message'] for p in state.problems if p['code'] == code]


def inserted_by_migrate(peer, folder, db):
    """Run drizzle-orm's migrate(); return the created_at values of the rows it inserted, in order."""
    before = tracking_rows(db) or []
    rows = peer.migrate(folder, db.url)['rows']
    assert [(r['id'], r['hash'], r['created_at']) for r in rows[:len(before)]] == [tuple(r) for r in before]
    return [r['created_at'] for r in rows[len(before):]]


def whens(folder, tags):
    by_tag = {e['tag']: e['when'] for e in read_journal(folder)['entries']}
    return [by_tag[t] for t in tags]


def test_partly_applied_by_drizzle_pending_is_what_migrate_inserts(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 12, weird=True, crlf=(3, 7))
    full = read_journal(folder)['entries']
    truncate_journal(folder, 5)
    drizzle_peer.migrate(folder, fresh_db.url)
    write_journal(folder, full)
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    assert state.problems == []
    assert state.applied == tags[:5] and state.current == [tags[4]] and state.heads == [tags[-1]]
    assert state.pending == tags[5:] and state.history == tags
    peer_status = drizzle_peer.status(folder, fresh_db.url)
    assert peer_status['pending'] == state.pending
    # our hashes are drizzle's hashes (CRLF, unicode, comment chunks included)
    assert {e['tag']: e['hash'] for e in peer_status['entries']} == {e.tag: e.hash() for e in state.detail.entries}
    assert inserted_by_migrate(drizzle_peer, folder, fresh_db) == whens(folder, state.pending)
    state = adapter.read_state(conn)
    assert state.pending == [] and state.applied == tags and state.problems == []


def test_fresh_database_everything_pending(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 4)
    state = drizzle_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert state.pending == tags and state.current == [] and state.current_revision is None
    assert tracking_rows(fresh_db) is None  # reading created nothing
    assert inserted_by_migrate(drizzle_peer, folder, fresh_db) == whens(folder, tags)


def test_non_monotonic_journal_is_out_of_order(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 4)
    drizzle_peer.migrate(folder, fresh_db.url)
    # a branch merged late: its `when` is older than the newest applied migration
    late = generate(folder, 2, start=4, whens={4: 1700000001500, 5: 1700000009000}, chain=False)
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    assert codes(state) == ['out_of_order']
    (msg,) = messages(state, 'out_of_order')
    assert late[0] in msg and 'allow_out_of_order' in msg and 'skip' in msg
    assert state.pending == [late[1]]
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == [late[1]]

    with pytest.raises(PlanError) as info:
        adapter.plan(state, 'head')
    assert info.value.code == 'out_of_order' and late[0] in str(info.value)
    assert 'allow_out_of_order=true' in str(info.value)

    # drizzle-orm really skips it: it inserts only the newer one, and gen_0004 never appears
    assert inserted_by_migrate(drizzle_peer, folder, fresh_db) == [1700000009000]
    assert 'public.gen_0004' not in fresh_db.tables()
    state = adapter.read_state(conn)
    assert codes(state) == ['out_of_order'] and state.pending == []

    result = adapter.apply(conn, adapter.plan(state, 'head', {'allow_out_of_order': True}))
    assert result.applied == [late[0]]
    assert 'public.gen_0004' in fresh_db.tables()
    rows = tracking_rows(fresh_db)
    assert rows[-1][2] == 1700000001500  # created_at = its `when`, as drizzle-orm would have written
    state = adapter.read_state(conn)
    assert state.problems == [] and state.pending == [] and state.applied == tags + late
    assert state.current == [late[1]]
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []
    assert inserted_by_migrate(drizzle_peer, folder, fresh_db) == []


def test_edited_applied_file_is_modified(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 3)
    drizzle_peer.migrate(folder, fresh_db.url)
    generate(folder, 1, start=3)
    path = os.path.join(folder, tags[1] + '.sql')
    with open(path, 'a') as fh:
        fh.write('\n-- an innocent-looking edit\n')
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    assert codes(state) == ['modified']
    (msg,) = messages(state, 'modified')
    assert tags[1] in msg and path in msg and 'allow_modified' in msg
    assert state.applied == tags and state.pending == [read_journal(folder)['entries'][3]['tag']]
    with pytest.raises(PlanError) as info:
        adapter.plan(state, 'head')
    assert info.value.code == 'modified' and tags[1] in str(info.value)
    result = adapter.apply(conn, adapter.plan(state, 'head', {'allow_modified': True}))
    assert len(result.applied) == 1
    # drizzle-orm never checks hashes: it agrees nothing is pending
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []


def test_row_of_a_deleted_entry_is_unknown_migration(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 4)
    drizzle_peer.migrate(folder, fresh_db.url)
    data = read_journal(folder)
    write_journal(folder, data['entries'][:2] + data['entries'][3:])  # entry 2 deleted after it was applied
    state = drizzle_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert codes(state) == ['unknown_migration']
    (msg,) = messages(state, 'unknown_migration')
    assert 'row id 3' in msg and '1700000002000' in msg and 'removed from the journal' in msg
    assert state.applied == [tags[0], tags[1], tags[3]] and state.pending == []
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []


def test_edited_when_points_at_its_entry(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 3)
    drizzle_peer.migrate(folder, fresh_db.url)
    data = read_journal(folder)
    data['entries'][2]['when'] = 1700000099000
    write_journal(folder, data['entries'])
    state = drizzle_adapter(tmp_path, fresh_db.url).read_state(conn)
    # the row holds its hash: it IS that entry, applied; drizzle-orm would run it again, which is out of order
    assert state.applied == tags and codes(state) == ['out_of_order']
    (msg,) = messages(state, 'out_of_order')
    assert tags[2] in msg and 'Put its `when` back to 1700000002000' in msg and 'run it again' in msg
    # drizzle-orm would run it again; we say so by listing it as pending, and the plan refuses to
    assert state.pending == [tags[2]] == drizzle_peer.status(folder, fresh_db.url)['pending']
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    with pytest.raises(PlanError) as info:
        adapter.plan(adapter.read_state(conn), 'head')
    assert info.value.code == 'out_of_order' and tags[2] in str(info.value)


def test_row_without_created_at_makes_drizzle_rerun_everything(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 3)
    fresh_db.execute('CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations '
                     '(id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)')
    fresh_db.execute("INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('x', 1700000005000), "
                     "('y', NULL)")
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    # ORDER BY created_at DESC puts the NULL first: Number(null) = 0, so every entry is pending
    assert state.pending == tags
    assert 'unknown_migration' in codes(state)
    assert any('no created_at' in m for m in messages(state, 'unknown_migration'))
    with pytest.raises(PlanError) as info:
        adapter.plan(state, 'head')
    assert info.value.code == 'unknown_migration' and 'created_at' in str(info.value)
    assert inserted_by_migrate(drizzle_peer, folder, fresh_db) == whens(folder, tags)


def test_row_applied_twice_is_unknown_migration(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 2)
    drizzle_peer.migrate(folder, fresh_db.url)
    fresh_db.execute('INSERT INTO drizzle.__drizzle_migrations (hash, created_at) '
                     'SELECT hash, created_at FROM drizzle.__drizzle_migrations WHERE id = 1')
    state = drizzle_adapter(tmp_path, fresh_db.url).read_state(conn)
    assert state.applied == tags and codes(state) == ['unknown_migration']
    assert 'repeats migration %s (row id 1)' % tags[0] in messages(state, 'unknown_migration')[0]


def test_entries_sharing_a_when_match_by_hash(tmp_path, fresh_db, conn, drizzle_peer):
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 4, whens={1: 1700000005000, 2: 1700000005000, 3: 1700000005000})
    truncate_journal(folder, 2)
    drizzle_peer.migrate(folder, fresh_db.url)
    data = read_journal(folder)
    full = data['entries'] + [journal_entry(2, tags[2], 1700000005000), journal_entry(3, tags[3], 1700000005000)]
    write_journal(folder, full)
    state = drizzle_adapter(tmp_path, fresh_db.url).read_state(conn)
    # the two new entries share the applied one's `when`: drizzle-orm skips them
    assert state.applied == tags[:2]
    assert codes(state) == ['out_of_order'] and state.pending == []
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []


def test_status_of_50_services_sharing_one_connection(tmp_path, fresh_db, conn):
    """50 services on one connection each see only their own tracking table (timing: benchmarks/)."""
    template = tmp_path / 'template'
    tags = generate(str(template / 'migrations'), 40)
    adapters = []
    for n in range(50):
        root = tmp_path / ('svc%02d' % n)
        shutil.copytree(str(template), str(root))
        adapters.append(drizzle_adapter(root, fresh_db.url, name='svc%02d' % n,
                                        migrations_table='mig_%02d' % n))
    first = adapters[0]
    first.apply(conn, first.plan(first.read_state(conn), tags[29]))
    for n in range(1, 50):
        fresh_db.execute('CREATE TABLE drizzle.mig_%02d AS SELECT * FROM drizzle.mig_00' % n)
    fresh_db.execute('DELETE FROM drizzle.mig_49 WHERE created_at = (SELECT max(created_at) FROM drizzle.mig_49)')
    states = [a.read_state(conn) for a in adapters]
    assert all(s.applied == tags[:30] and s.pending == tags[30:] and s.problems == [] for s in states[:49])
    assert states[49].applied == tags[:29] and states[49].pending == tags[29:]


def test_non_utf8_file_applied_by_drizzle_has_drizzles_hash(tmp_path, fresh_db, conn, drizzle_peer):
    folder = tmp_path / 'migrations'
    tags = generate(str(folder), 2)
    path = folder / (tags[1] + '.sql')
    # latin-1 bytes in a comment: drizzle-orm hashes (and runs) the text with U+FFFD in their place
    path.write_bytes(path.read_bytes() + b'\n-- caf\xe9 cr\xe8me \xff\n')
    drizzle_peer.migrate(str(folder), fresh_db.url)
    adapter = drizzle_adapter(tmp_path, fresh_db.url)
    state = adapter.read_state(conn)
    assert state.applied == tags and state.problems == [] and state.pending == []
    assert tracking_rows(fresh_db)[1][1] == state.detail.entries[1].hash()


def test_example_bots_read_the_same_as_drizzle(tmp_path, make_db, drizzle_peer):
    services = os.path.join(REPO, 'examples', 'homelab', 'services')
    bots = [b for b in ('stream-bot', 'discord-bot')
            if os.path.isfile(os.path.join(services, b, 'migrations', 'meta', '_journal.json'))]
    if not bots:
        pytest.skip('the example bots are not there yet')
    for bot in bots:
        db = make_db()
        folder = os.path.join(services, bot, 'migrations')
        c = db.conn()
        try:
            adapter = drizzle_adapter(os.path.join(services, bot), db.url, name=bot)
            state = adapter.read_state(c)
            assert state.problems == [] and state.pending == state.history and len(state.history) >= 3
            peer = drizzle_peer.status(folder, db.url)
            assert {e['tag']: e['hash'] for e in peer['entries']} == \
                {e.tag: e.hash() for e in state.detail.entries}
            drizzle_peer.migrate(folder, db.url)
            state = adapter.read_state(c)
            assert state.problems == [] and state.pending == [] and state.applied == state.history
            assert state.current == state.heads
        finally:
            c.close()
