"""Real projects' histories (the shared corpus) against the real tools.

Drizzle: three migration folders of public projects, exactly as their drizzle-kit wrote them. The oracle
is drizzle-orm's migrate() (the peer): whichever tool applies which part, and in which order, the
database ends with the same ``pg_dump --schema-only`` and the same ``__drizzle_migrations`` rows as
drizzle-orm alone makes, and at every position both agree on what is pending.

Alembic: four real trees (open-webui, prefect, dagster, optuna) written from their wheels into
``.cache/corpus`` by scripts/setup.sh; their env.py raises when executed, so every answer here is
read without running service code. The oracle is real alembic's ScriptDirectory on the same folder
(tests/harness/alembic_oracle.py): heads, history and, at sampled positions, what ``alembic current``
prints, the revisions ``alembic upgrade heads`` runs and ``alembic downgrade <position>`` runs from the heads.

A parametrized sample of positions runs by default; the sweeps over every position are marked slow.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from harness.corpus import ALEMBIC_TREES, DRIZZLE_FOLDERS, alembic_tree, drizzle_folder
from harness.drizzle_gen import drizzle_adapter, read_journal, tracking_rows, truncate_journal
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ApplyError, PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl

ORACLE = os.path.join(REPO, 'tests', 'harness', 'alembic_oracle.py')

pytestmark = pytest.mark.corpus


# ------------------------------------------------------------------------------------------ drizzle
def folder_copy(tmp_path, name, keep=None):
    """A copy of a corpus folder under tmp_path/<name>/migrations (its journal cut to ``keep`` entries)."""
    root = tmp_path / name
    dest = root / 'migrations'
    shutil.copytree(drizzle_folder(name), str(dest))
    if keep is not None:
        truncate_journal(str(dest), keep)
    return root, str(dest)


def state_of(root, db):
    conn = db.conn()
    try:
        return drizzle_adapter(root, db.url).read_state(conn)
    finally:
        conn.close()


def apply_with_adapter(root, db, target='head', mode='all'):
    conn = db.conn()
    try:
        adapter = drizzle_adapter(root, db.url)
        plan = adapter.plan(adapter.read_state(conn), target, {'transaction': mode})
        return adapter.apply(conn, plan)
    finally:
        conn.close()


@pytest.fixture(scope='module')
def drizzle_reference(pg, drizzle_peer, tmp_path_factory):
    """{folder: (tags, rows, schema)} of databases migrated by drizzle-orm alone."""
    from harness.pg import Database
    out = {}
    made = []
    for name in DRIZZLE_FOLDERS:
        folder = drizzle_folder(name)
        db = Database(pg, pg.create_database())
        made.append(db)
        drizzle_peer.migrate(folder, db.url)
        tags = [e['tag'] for e in read_journal(folder)['entries']]
        out[name] = (tags, tracking_rows(db), db.schema_dump())
    yield out
    for db in made:
        pg.drop_database(db.name)


def assert_like_drizzle(name, db, drizzle_reference, drizzle_peer):
    tags, rows, schema = drizzle_reference[name]
    got = tracking_rows(db)
    assert [(r[1], r[2]) for r in got] == [(r[1], r[2]) for r in rows]
    assert db.schema_dump() == schema
    assert drizzle_peer.status(drizzle_folder(name), db.url)['pending'] == []
    root = os.path.dirname(drizzle_folder(name))
    conn = db.conn()
    try:
        state = drizzle_adapter(root, db.url, migrations_dir=name).read_state(conn)
    finally:
        conn.close()
    assert state.problems == [] and state.pending == [] and state.applied == tags


# migrations whose file ends drizzle-orm's transaction itself (dittofeed's 0002 is `BEGIN; ... COMMIT;`):
# drizzle-orm runs them and records them, though the COMMIT broke its one-transaction promise; the
# collection stops there with error code transaction_ended (see the drizzle adapter) instead
ENDS_TRANSACTION = {'dittofeed': '0002_spicy_inertia'}


@pytest.mark.parametrize('name', DRIZZLE_FOLDERS)
def test_drizzle_corpus_applied_by_the_collection_alone(name, fresh_db, drizzle_reference, drizzle_peer, tmp_path):
    root, folder = folder_copy(tmp_path, name)
    state = state_of(root, fresh_db)
    assert state.problems == [] and state.pending == drizzle_reference[name][0]
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == state.pending
    if name in ENDS_TRANSACTION:
        with pytest.raises(ApplyError) as info:
            apply_with_adapter(root, fresh_db)
        assert info.value.code == 'transaction_ended' and info.value.details['failed'] == ENDS_TRANSACTION[name]
        assert ENDS_TRANSACTION[name] not in state_of(root, fresh_db).applied
        return
    result = apply_with_adapter(root, fresh_db)
    assert result.applied == drizzle_reference[name][0]
    assert_like_drizzle(name, fresh_db, drizzle_reference, drizzle_peer)


# (folder, entries the first tool applies, which tool goes first)
MIXED = [('ai-chatbot', 4, 'drizzle'), ('ai-chatbot', 7, 'collection'), ('homarr', 1, 'collection'),
         ('homarr', 6, 'drizzle'), ('dittofeed', 3, 'drizzle'), ('dittofeed', 2, 'collection'),
         ('dittofeed', 9, 'drizzle')]


@pytest.mark.parametrize('name,split,first', MIXED, ids=['%s-%d-%s-first' % m for m in MIXED])
def test_drizzle_corpus_mixed_with_drizzle_orm(name, split, first, fresh_db, drizzle_reference, drizzle_peer,
                                               tmp_path):
    older_root, older = folder_copy(tmp_path / 'older', name, keep=split)
    full_root, full = folder_copy(tmp_path / 'full', name)
    tags = drizzle_reference[name][0]
    if first == 'drizzle':
        drizzle_peer.migrate(older, fresh_db.url)
    else:
        assert apply_with_adapter(older_root, fresh_db, mode='each').applied == tags[:split]
    # both agree on the position and on what is pending
    state = state_of(full_root, fresh_db)
    assert state.problems == [] and state.applied == tags[:split]
    assert state.pending == drizzle_peer.status(full, fresh_db.url)['pending'] == tags[split:]
    if first == 'drizzle':
        assert apply_with_adapter(full_root, fresh_db).applied == tags[split:]
    else:
        drizzle_peer.migrate(full, fresh_db.url)
    assert_like_drizzle(name, fresh_db, drizzle_reference, drizzle_peer)


def test_drizzle_corpus_revert_without_down_files_is_refused(fresh_db, drizzle_peer, tmp_path):
    root, folder = folder_copy(tmp_path, 'homarr')
    drizzle_peer.migrate(folder, fresh_db.url)
    before = tracking_rows(fresh_db)
    conn = fresh_db.conn()
    try:
        adapter = drizzle_adapter(root, fresh_db.url)
        with pytest.raises(PlanError) as info:
            adapter.plan(adapter.read_state(conn), '-1')
    finally:
        conn.close()
    assert info.value.code == 'missing_file' and '.down.sql' in str(info.value)
    assert tracking_rows(fresh_db) == before


# ------------------------------------------------------------------------------------------ alembic
def oracle(root, positions):
    proc = subprocess.run([sys.executable, ORACLE, root, json.dumps(positions)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def alembic_state(root, db, rows):
    """Our read of ``root`` with the version table holding ``rows`` (what `alembic stamp` would leave)."""
    conn = db.conn()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(255) PRIMARY KEY)')
            cur.execute('DELETE FROM alembic_version')
            for row in rows:
                cur.execute('INSERT INTO alembic_version VALUES (%s)', (row,))
        adapter = AlembicAdapter({'name': 'corpus', 'tool': 'alembic', 'path': root, 'alembic_config': 'alembic.ini',
                                  'alembic_command': [sys.executable, '-c', 'raise SystemExit(3)'],
                                  'target': 'heads'}, DbUrl(db.url))
        state = adapter.read_state(conn)
        heads = state.heads
        down = None
        if rows is not None:
            with conn.cursor() as cur:
                cur.execute('DELETE FROM alembic_version')
                for head in heads:
                    cur.execute('INSERT INTO alembic_version VALUES (%s)', (head,))
            at_heads = adapter.read_state(conn)
            down = adapter.plan(at_heads, ','.join(rows) if rows else 'base').steps
        return state, down
    finally:
        conn.close()


def sample(history, count=4):
    """Positions spread over the history: nothing applied, a few revisions in between, the last one."""
    picks = sorted({round(i * (len(history) - 1) / (count - 1)) for i in range(count)})
    return [[]] + [[history[i]] for i in picks]


def check_positions(root, db, positions):
    expected = oracle(root, positions)
    for rows, up, down, current in zip(positions, expected['upgrade'], expected['downgrade'], expected['current']):
        state, plan_down = alembic_state(root, db, rows)
        assert state.problems == [], state.problems
        assert sorted(state.detail.graph.all_current(state.current)) == current
        assert state.heads == expected['heads']
        assert state.history == expected['history']
        assert state.pending == up, rows
        assert plan_down == down, rows


@pytest.mark.parametrize('name', ALEMBIC_TREES)
def test_alembic_corpus_heads_history_pending_and_plans(name, fresh_db):
    root = alembic_tree(name)
    expected = oracle(root, [])
    check_positions(root, fresh_db, sample(expected['history']))


@pytest.mark.slow
@pytest.mark.parametrize('name', ALEMBIC_TREES)
def test_alembic_corpus_every_position(name, fresh_db):
    root = alembic_tree(name)
    expected = oracle(root, [])
    check_positions(root, fresh_db, [[]] + [[r] for r in expected['history']])
