"""homelab.migrations.homelab_pg_backup through real ansible-playbook, real PostgreSQL, real pg_dump."""

import json
import os
import re
import threading
import time
from urllib.parse import quote

from harness.ansible import run_module

MODULE = 'homelab_pg_backup'


def secret_forms(password):
    return {password, quote(password, safe=''), quote(password)}


def assert_no_secret(password, *texts):
    for text in texts:
        if not isinstance(text, str):
            text = json.dumps(text)
        for form in secret_forms(password):
            assert form not in text


def cmdlines():
    out = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as fh:
                    out[int(entry)] = fh.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            except OSError:
                pass
    return out


def seed(db):
    db.execute("""
        CREATE SCHEMA app;
        CREATE TABLE app.items (id serial PRIMARY KEY, name text UNIQUE, price numeric(10, 2));
        CREATE INDEX items_price ON app.items (price);
        INSERT INTO app.items (name, price) SELECT 'item ' || i, i * 1.25 FROM generate_series(1, 2000) i;
        CREATE TABLE public.notes (id bigint GENERATED ALWAYS AS IDENTITY, body text);
        INSERT INTO public.notes (body) SELECT md5(i::text) FROM generate_series(1, 500) i;
        SELECT setval('app.items_id_seq', 123456789);
    """)
    db.execute("SELECT lo_from_bytea(9001, %s)", (b'large object \x00\x01\x02',))


def snapshot(db):
    snap = db.snapshot()
    snap['seq'] = db.query('SELECT last_value, is_called FROM app.items_id_seq')
    snap['lo'] = db.query('SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1')
    return snap


def test_backup_and_restore_through_ansible(fresh_db, tmp_path):
    seed(fresh_db)
    before = snapshot(fresh_db)
    dest = str(tmp_path / 'backups')
    args = dict(database_url=fresh_db.password_url, dest=dest, service='dashboard')

    # check mode: reports the file it would make, writes nothing
    res, proc = run_module(MODULE, args, check=True, verbosity=3)
    assert not res.get('failed'), res
    assert res['changed'] is True and re.match(r'^dashboard_\d{8}_\d{6}\.dump$', os.path.basename(res['path']))
    assert res['sha256'] is None and not os.path.exists(dest)
    assert_no_secret(fresh_db.password, res, proc.stdout, proc.stderr)

    # a real backup, while a lock holds pg_dump so the test can look at every command line meanwhile
    locker = fresh_db.conn()
    locker.autocommit = False
    outcome = {}
    with locker.cursor() as cur:
        cur.execute('LOCK TABLE public.notes IN ACCESS EXCLUSIVE MODE')
    worker = threading.Thread(target=lambda: outcome.update(zip(('res', 'proc'), run_module(MODULE, args,
                                                                                            verbosity=3))))
    worker.start()
    seen = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not seen:
            for line in cmdlines().values():
                assert_no_secret(fresh_db.password, line)
                if 'pg_dump' in line and '--file=' in line:
                    seen.append(line)
            time.sleep(0.01)
        assert seen, 'pg_dump never showed up'
        for _poll in range(20):  # a little longer: all its processes, while it waits for the lock
            for line in cmdlines().values():
                assert_no_secret(fresh_db.password, line)
            time.sleep(0.02)
    finally:
        locker.rollback()
        locker.close()
    worker.join(300)
    res, proc = outcome['res'], outcome['proc']
    assert not res.get('failed'), res
    assert res['changed'] is True and res['format'] == 'custom' and res['skipped'] is False
    assert os.path.isfile(res['path']) and os.path.isfile(res['path'] + '.sha256')
    assert res['size_bytes'] == os.path.getsize(res['path'])
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in proc.stdout  # -vvv shows the arguments, masked
    assert_no_secret(fresh_db.password, res, proc.stdout, proc.stderr)
    assert '<localhost>' in proc.stdout  # really -vvv output
    path = res['path']

    fresh_db.execute("""
        DELETE FROM app.items WHERE id % 2 = 0;
        DROP TABLE public.notes;
        SELECT setval('app.items_id_seq', 1);
        SELECT lo_unlink(9001);
    """)
    assert snapshot(fresh_db) != before

    rargs = dict(database_url=fresh_db.password_url, state='restored', path=path)
    res, proc = run_module(MODULE, rargs, check=True)
    assert res['changed'] is True and not res.get('failed')
    assert snapshot(fresh_db) != before  # check mode restored nothing
    res, proc = run_module(MODULE, rargs, verbosity=3)
    assert not res.get('failed'), res
    assert res['changed'] is True and res['path'] == path and res['format'] == 'custom'
    assert_no_secret(fresh_db.password, res, proc.stdout, proc.stderr)
    assert snapshot(fresh_db) == before


def test_restore_refuses_a_tampered_backup_through_ansible(fresh_db, tmp_path):
    seed(fresh_db)
    dest = str(tmp_path / 'backups')
    res, _proc = run_module(MODULE, dict(database_url=fresh_db.password_url, dest=dest, service='svc',
                                         format='plain'))
    assert not res.get('failed'), res
    with open(res['path'], 'a') as fh:
        fh.write('DROP SCHEMA app CASCADE;\n')
    out, proc = run_module(MODULE, dict(database_url=fresh_db.password_url, state='restored', path=res['path']),
                           verbosity=3)
    assert out['failed'] is True and 'truncated or modified' in out['msg']
    assert_no_secret(fresh_db.password, out, proc.stdout, proc.stderr)
    assert fresh_db.query('SELECT count(*) FROM app.items') == [(2000,)]


def test_wrong_password_fails_masked(fresh_db, tmp_path):
    url = fresh_db.password_url.replace('Cnry', 'Bad')
    bad_password = fresh_db.password.replace('Cnry', 'Bad')
    res, proc = run_module(MODULE, dict(database_url=url, dest=str(tmp_path / 'b'), service='svc'), verbosity=3)
    assert res['failed'] is True and 'check the user and password' in res['msg']
    assert_no_secret(bad_password, res, proc.stdout, proc.stderr)
    assert not os.path.exists(str(tmp_path / 'b'))


def test_neon_is_skipped_through_ansible(tmp_path):
    url = 'postgresql://owner:NeonSecret99@ep-quiet-sun-123.us-east-2.aws.neon.tech/neondb?sslmode=require'
    res, proc = run_module(MODULE, dict(database_url=url, dest=str(tmp_path / 'b'), service='stream-bot'),
                           verbosity=3)
    assert not res.get('failed'), res
    assert res['skipped'] is True and res['changed'] is False and 'Neon' in res['reason']
    assert_no_secret('NeonSecret99', res, proc.stdout, proc.stderr)


def _fake_backup(dest, name, age_days):
    path = os.path.join(dest, name)
    with open(path, 'w') as fh:
        fh.write('x')
    with open(path + '.sha256', 'w') as fh:
        fh.write('%s  %s\n' % ('1' * 64, name))
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


def test_prune_four_passes_with_diff(tmp_path):
    dest = str(tmp_path / 'backups')
    os.makedirs(dest)
    paths = [_fake_backup(dest, 'dashboard_2024010%d_000000.dump' % i, 30 - i) for i in range(1, 6)]
    foreign = _fake_backup(dest, 'discord-bot_20240101_000000.dump', 60)
    args = dict(state='pruned', dest=dest, service='dashboard', keep_count=2, keep_days=7)

    res, proc = run_module(MODULE, args, check=True, diff=True)
    assert res['changed'] is True and sorted(res['pruned']) == sorted(paths[:3])
    assert all(os.path.exists(p) for p in paths)
    assert '-dashboard_20240101_000000.dump' in proc.stdout  # the diff shows what goes

    res, _proc = run_module(MODULE, args)
    assert res['changed'] is True and sorted(res['pruned']) == sorted(paths[:3])
    assert [os.path.exists(p) for p in paths] == [False, False, False, True, True]
    assert os.path.exists(foreign)

    res, _proc = run_module(MODULE, args, check=True)
    assert res['changed'] is False and res['pruned'] == []
    res, _proc = run_module(MODULE, args)
    assert res['changed'] is False and res['pruned'] == []
    assert sorted(os.listdir(dest)) == sorted(
        [os.path.basename(p) for p in paths[3:]] + [os.path.basename(p) + '.sha256' for p in paths[3:]]
        + ['discord-bot_20240101_000000.dump', 'discord-bot_20240101_000000.dump.sha256'])


def test_argument_rules(tmp_path):
    res, _proc = run_module(MODULE, dict(state='pruned', dest=str(tmp_path), service='x'))
    assert res['failed'] is True and 'keep_days' in res['msg']
    res, _proc = run_module(MODULE, dict(state='restored', database_url='postgresql://u@h/db'))
    assert res['failed'] is True and 'path' in res['msg']
