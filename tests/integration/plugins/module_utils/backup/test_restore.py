"""Issue 11: a restore commits only a complete backup, and only another service's/database's backup on request.

Real PostgreSQL, the real pg_dump/pg_restore/psql. A truncated archive whose .sha256 was regenerated (as the
module's own message tells an operator to do) is refused before anything changes; pg_restore or psql killed
at random points (the OOM killer) leaves the database equal to either its pre-restore contents or the
backup's, never a mix; a backup of another service or database is refused unless allow_foreign_backup.
"""

import hashlib
import os
import random
import signal
import threading
import time

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError


def seed(db, rows=20000):
    db.execute("""
        CREATE SCHEMA app;
        CREATE TYPE app.mood AS ENUM ('sad', 'ok');
        CREATE TABLE app.a (id serial PRIMARY KEY, mood app.mood, note text);
        CREATE TABLE app.b (id serial PRIMARY KEY, a_id int REFERENCES app.a(id), payload text);
        INSERT INTO app.a (mood, note) SELECT 'ok', repeat('n', 50) || i FROM generate_series(1, %d) i;
        INSERT INTO app.b (a_id, payload) SELECT 1 + i %% %d, md5(i::text) FROM generate_series(1, %d) i;
        CREATE INDEX b_a ON app.b (a_id);
    """ % (rows, rows, rows * 3))
    db.execute("SELECT lo_from_bytea(77777, 'large object')")


def mutate(db):
    db.execute("""
        DELETE FROM app.b WHERE id % 2 = 0;
        UPDATE app.a SET note = 'changed' WHERE id < 100;
        CREATE TABLE app.newer (id int);
        ALTER TABLE app.a ADD COLUMN extra int;
    """)


def regenerate_sidecar(path):
    """What an operator does when the module says the checksum file is missing or does not match."""
    digest = hashlib.sha256(open(path, 'rb').read()).hexdigest()
    with open(path + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % (digest, os.path.basename(path)))


def restore(db, path, **kw):
    return entry.run(dict(database_url=db.password_url, state='restored', path=path, **kw))


@pytest.fixture
def dumped(fresh_db, tmp_path):
    seed(fresh_db)
    made = {}
    for fmt in ('custom', 'plain'):
        made[fmt] = entry.run(dict(database_url=fresh_db.password_url, dest=str(tmp_path / 'b'), service='svc',
                                   format=fmt))
        time.sleep(1.05)  # distinct names (second resolution)
    snapshot = fresh_db.snapshot()
    mutate(fresh_db)
    return fresh_db, made, snapshot


@pytest.mark.parametrize('fmt', ['custom', 'plain'])
@pytest.mark.parametrize('clean', ['database', 'objects'])
def test_a_truncated_backup_with_a_regenerated_checksum_is_refused(dumped, fmt, clean):
    db, made, _snap = dumped
    path = made[fmt]['path']
    with open(path, 'r+b') as fh:
        fh.truncate(os.path.getsize(path) * 2 // 3)
    regenerate_sidecar(path)
    before = db.snapshot()
    with pytest.raises(BackupError) as err:
        restore(db, path, clean=clean)
    assert err.value.result['error_code'] == 'incomplete_backup'
    assert err.value.result['untouched'] is True
    assert 'nothing was changed' in str(err.value)
    assert db.snapshot() == before


def test_a_complete_backup_restores_whole(dumped):
    db, made, snap = dumped
    out = restore(db, made['custom']['path'], clean='database')
    assert out['changed'] is True and out['untouched'] is False and out['error_code'] is None
    assert db.snapshot() == snap


def _children_named(name, marker):
    me = os.getpid()
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as fh:
                argv = fh.read().split(b'\0')
            with open('/proc/%s/stat' % pid) as fh:
                ppid = int(fh.read().rsplit(')', 1)[1].split()[1])
        except (IOError, OSError, ValueError, IndexError):
            continue
        if ppid == me and argv and os.path.basename(argv[0].decode()) == name \
                and any(marker in a.decode() for a in argv):
            out.append(int(pid))
    return out


def _kill_after(name, marker, delay, killed):
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline and not seen:
        seen = _children_named(name, marker)
        time.sleep(0.002)
    time.sleep(delay)
    for pid in seen or []:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize('victim', [('pg_restore', '--single-transaction'), ('psql', 'ON_ERROR_STOP')])
def test_killing_the_restore_at_random_points_never_leaves_a_mix(dumped, victim):
    """The OOM killer takes pg_restore (or psql) at a random moment: before or backup, never a mix."""
    db, made, snap = dumped
    pre = db.snapshot()
    rng = random.Random(11)
    outcomes = set()
    for delay in [0.0, 0.01] + [rng.uniform(0.0, 0.4) for dummy in range(4)]:
        if db.snapshot() != pre:  # a previous round restored it whole: start from the mutated state again
            db.execute('DROP SCHEMA app CASCADE; SELECT lo_unlink(77777)')
            seed(db)
            mutate(db)
            pre = db.snapshot()
        killed = []
        killer = threading.Thread(target=_kill_after, args=(victim[0], victim[1], delay, killed))
        killer.start()
        try:
            restore(db, made['custom']['path'], clean='database')
            failed = None
        except BackupError as exc:
            failed = exc
        killer.join()
        now = db.snapshot()
        assert now in (pre, snap), 'a mix after killing %s at %.3fs' % (victim[0], delay)
        if now == pre:
            assert failed is not None and failed.result['untouched'] is True, 'rolled back but reported a success'
            outcomes.add('before')
        else:
            outcomes.add('backup')
    assert 'before' in outcomes  # the kill really landed mid-restore at least once


# ------------------------------------------------------------------------------- another service's backup
def test_another_services_backup_is_refused(fresh_db, tmp_path):
    seed(fresh_db, rows=10)
    made = entry.run(dict(database_url=fresh_db.password_url, dest=str(tmp_path / 'b'), service='stream-bot'))
    mutate(fresh_db)
    before = fresh_db.snapshot()
    with pytest.raises(BackupError) as err:
        restore(fresh_db, made['path'], service='discord-bot')
    assert err.value.result['error_code'] == 'foreign_backup' and err.value.result['untouched'] is True
    assert "service 'stream-bot'" in str(err.value) and 'allow_foreign_backup' in str(err.value)
    assert fresh_db.snapshot() == before
    # on purpose: the explicit override
    assert restore(fresh_db, made['path'], service='discord-bot', allow_foreign_backup=True,
                   clean='database')['changed'] is True
    assert fresh_db.snapshot() != before


def test_a_backup_of_another_database_is_refused(fresh_db, make_db, tmp_path):
    seed(fresh_db, rows=10)
    made = entry.run(dict(database_url=fresh_db.password_url, dest=str(tmp_path / 'b'), service='svc'))
    other = make_db()
    before = other.snapshot()
    with pytest.raises(BackupError) as err:
        restore(other, made['path'], service='svc')
    assert err.value.result['error_code'] == 'foreign_backup'
    assert fresh_db.name in str(err.value) and other.name in str(err.value)
    assert other.snapshot() == before
    assert restore(other, made['path'], service='svc', allow_foreign_backup=True)['changed'] is True
    assert other.snapshot() == fresh_db.snapshot()
