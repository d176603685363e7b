"""Apply rows: (4) drizzle, 500 migrations vs drizzle-orm's migrate(); (5) alembic, 100 revisions vs
`alembic upgrade head`. Every run starts from a fresh, empty database.

    rows = run(server, reps=3, quick=False, only=None)
"""

import json
import os
import shutil
import tempfile

import common
from common import BenchError, make_row

DRIZZLE_FULL = 500
DRIZZLE_QUICK = 30
ALEMBIC_FULL = 100
ALEMBIC_QUICK = 12


def _count_rows(server, db, sql):
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _fresh(server, prefix, fn):
    """fn(db name, url) on a new database, dropped afterwards."""
    db = common.fresh_database(server, prefix)
    try:
        common.checkpoint(server)
        return fn(db, server.url(db, password=True))
    finally:
        server.drop_database(db)


def row4_drizzle(server, peer, reps, tmp, quick):
    count = DRIZZLE_QUICK if quick else DRIZZLE_FULL
    root = common.drizzle_folder(count)
    folder = os.path.join(root, 'migrations')

    def ours_on(db, url):
        spec = dict(name='bench-drizzle', tool='drizzle', path=root, database_url=url)
        child, answer = common.code_child('apply', {'service': spec, 'params': {'target': 'head'}}, tmp)
        if answer['failed'] or answer['applied'] != count:
            raise BenchError('the collection applied %s of %d drizzle migrations: %s'
                             % (answer['applied'], count, answer.get('msg')))
        rows = _count_rows(server, db, 'SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0]
        if rows != count:
            raise BenchError('after our apply the tracking table has %d rows, not %d' % (rows, count))
        child.inner = answer['duration_seconds']
        return child

    def raw_on(db, url):
        child, answer = common.peer_child(peer, 'migrate', folder, url)
        if len(answer['rows']) != count:
            raise BenchError('drizzle-orm migrate() left %d rows, not %d' % (len(answer['rows']), count))
        return child

    ours_runs, raw_runs = [], []
    for i in range(reps):
        order = ((ours_runs, ours_on), (raw_runs, raw_on)) if i % 2 == 0 else ((raw_runs, raw_on), (ours_runs, ours_on))
        for runs, fn in order:
            runs.append(_fresh(server, 'drz', fn))
    inner = common.median([c.inner for c in ours_runs])
    statements = len(list(_statements(folder)))
    notes = ('%d migrations, %d statements, one transaction each side, fresh database per run. ours = one '
             'interpreter running the apply module_utils (run_apply: lock, read, plan, apply, re-read), %.2fs of it '
             'inside run_apply; raw = node peer.js migrate (drizzle-orm migrate())' % (count, statements, inner))
    return make_row('4', 'apply: drizzle, %d migrations' % count, ours_runs, raw_runs, ('ratio', 1.0), notes=notes,
                    extra={'migrations': count, 'statements': statements, 'run_apply_s': inner})


def _statements(folder):
    from harness.drizzle_gen import BP
    for tag in common.journal_tags(folder):
        with open(os.path.join(folder, tag + '.sql'), encoding='utf-8') as fh:
            for chunk in fh.read().split(BP):
                if chunk.strip():
                    yield chunk


def row5_alembic(server, reps, tmp, quick):
    count = ALEMBIC_QUICK if quick else ALEMBIC_FULL
    root = common.alembic_history(count)
    head = 'r%05d' % count

    def version(db):
        return [r[0] for r in _count_rows(server, db, 'SELECT version_num FROM alembic_version')]

    def ours_on(db, url):
        spec = dict(name='bench-alembic', tool='alembic', path=root, database_url=url,
                    alembic_command=[os.path.join(common.VENV_BIN, 'alembic')])
        child, answer = common.code_child('apply', {'service': spec, 'params': {'target': 'head'}}, tmp)
        if answer['failed'] or answer['applied'] != count or version(db) != [head]:
            raise BenchError('the collection applied %s of %d alembic revisions: %s'
                             % (answer['applied'], count, answer.get('msg')))
        child.inner = answer['duration_seconds']
        return child

    def raw_on(db, url):
        child = common.alembic_child(root, ['upgrade', 'head'], url)
        if version(db) != [head]:
            raise BenchError('alembic upgrade head left the version table at %r' % version(db))
        return child

    ours_runs, raw_runs = [], []
    for i in range(reps):
        order = ((ours_runs, ours_on), (raw_runs, raw_on)) if i % 2 == 0 else ((raw_runs, raw_on), (ours_runs, ours_on))
        for runs, fn in order:
            runs.append(_fresh(server, 'alb', fn))
    inner = common.median([c.inner for c in ours_runs])
    notes = ('%d revisions (a table each), fresh database per run. ours = one interpreter running the apply '
             'module_utils, which runs the same `alembic upgrade head` as a child (run_apply %.2fs of it); '
             'raw = alembic upgrade head' % (count, inner))
    return make_row('5', 'apply: alembic, %d revisions' % count, ours_runs, raw_runs, ('overhead', 0.3), notes=notes,
                    extra={'revisions': count, 'run_apply_s': inner})


def run(server, reps=3, quick=False, only=None, log=print):
    only = set(only or ('4', '5'))
    rows = []
    tmp = tempfile.mkdtemp(prefix='bench-apply-')
    try:
        if '4' in only:
            log('[bench] row 4: drizzle apply ...')
            rows.append(common.guarded('4', 'apply: drizzle migrations',
                                       lambda: row4_drizzle(server, common.drizzle_peer(), reps, tmp, quick), log=log))
        if '5' in only:
            log('[bench] row 5: alembic apply ...')
            rows.append(common.guarded('5', 'apply: alembic revisions', lambda: row5_alembic(server, reps, tmp, quick),
                                       log=log))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == '__main__':
    with common.pg_server() as srv:
        print(json.dumps(run(srv, reps=1, quick=True), indent=2))
