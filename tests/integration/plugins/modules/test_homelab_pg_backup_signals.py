"""homelab_pg_backup under stress: SIGKILL/SIGTERM mid-dump, full and read-only disks, a non-root user,
and the password never on any process's command line. Real PostgreSQL, real pg_dump.
"""

import contextlib
import glob
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

import pytest

from harness.ansible import COLLECTIONS
from harness.procs import alive
from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry as backup_entry
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError

# runs the module's code path (module_utils.backup.entry.run, as the module does) in a child process;
# parameters arrive on stdin so that nothing secret is on this process's command line either
RUNNER = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry, errors
params = json.load(sys.stdin)
check_mode = params.pop('_check_mode', False)
try:
    print(json.dumps({'ok': True, 'result': entry.run(params, check_mode=check_mode)}))
except errors.BackupError as exc:
    print(json.dumps({'ok': False, 'msg': str(exc)}))
'''


def start_runner(params, python=sys.executable, user=None, env=None):
    argv = [python, '-c', RUNNER, COLLECTIONS]
    if user:
        argv = ['runuser', '-u', user, '--'] + argv
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd='/', env=dict(os.environ, **env) if env else None)
    proc.stdin.write(json.dumps(params))
    proc.stdin.close()
    return proc


def finish(proc, timeout=300):
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=timeout)
    assert out.strip(), 'runner printed nothing (rc=%s): %s' % (proc.returncode, err)
    return json.loads(out.strip().splitlines()[-1])


def children(pid):
    """pids of all descendants of pid."""
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            with open('/proc/%d/task/%d/children' % (parent, parent)) as fh:
                kids = [int(x) for x in fh.read().split()]
        except OSError:
            kids = []
        found.extend(kids)
        todo.extend(kids)
    return found


def dump_pids(pid):
    """The pg_dump processes below pid that write a backup (not the `pg_dump --version` probes)."""
    found = []
    for child in children(pid):
        try:
            with open('/proc/%d/cmdline' % child, 'rb') as fh:
                argv = fh.read().split(b'\0')
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b'pg_dump' and any(a.startswith(b'--file=') for a in argv):
            found.append(child)
    return found


def wait_for(predicate, timeout=60, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out waiting')


def partials(dest):
    try:
        return [n for n in os.listdir(dest) if '.partial-' in n]
    except FileNotFoundError:
        return []


@pytest.fixture(scope='module')
def big_db(pg):
    """~1M rows: pg_dump -Fc takes a couple of seconds, long enough to interrupt it."""
    from harness.pg import Database
    db = Database(pg, pg.create_database())
    db.execute("""
        CREATE TABLE big (id bigint PRIMARY KEY, a text, b text);
        INSERT INTO big SELECT i, md5(i::text), md5((i * 7)::text) || md5((i * 13)::text)
          FROM generate_series(1, 1000000) i;
        CREATE TABLE small (id int);
        INSERT INTO small SELECT generate_series(1, 10);
    """)
    yield db
    pg.drop_database(db.name)


def final_names(dest):
    return [n for n in os.listdir(dest) if not n.startswith('.')]


# -------------------------------------------------------------------------------------------- signals
def test_sigkill_mid_backup_leaves_no_final_file(big_db, tmp_path, monkeypatch):
    dest = str(tmp_path / 'backups')
    private_tmp = tmp_path / 'tmp'  # its own TMPDIR: a concurrent run elsewhere would sweep the passfile first
    private_tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, 'tempdir', str(private_tmp))
    proc = start_runner(dict(database_url=big_db.password_url, dest=dest, service='big'),
                        env={'TMPDIR': str(private_tmp)})
    # pg_dump is running and has written part of the dump
    dump_pid = wait_for(lambda: dump_pids(proc.pid))[0]
    wait_for(lambda: [n for n in partials(dest) if os.path.getsize(os.path.join(dest, n)) > 0])
    assert final_names(dest) == []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # pg_dump dies with the module (PR_SET_PDEATHSIG), it does not go on writing
    wait_for(lambda: not alive(dump_pid), timeout=2)
    sizes = dict((n, os.path.getsize(os.path.join(dest, n))) for n in partials(dest))
    time.sleep(1.0)
    assert final_names(dest) == [], os.listdir(dest)
    assert dict((n, os.path.getsize(os.path.join(dest, n))) for n in partials(dest)) == sizes  # nobody writes
    left = partials(dest)
    assert left and all(n.startswith('.big_') and '.partial-' in n for n in left)
    # issue 13 input 4: the killed module's passfile is left, in its private 0700 directory named after it
    passdirs = glob.glob(os.path.join(tempfile.gettempdir(), '.homelab-pgpass-%d-*' % proc.pid))
    assert len(passdirs) == 1 and stat.S_IMODE(os.stat(passdirs[0]).st_mode) == 0o700
    # the next run removes what the killed one left (the passfile too), and makes a good backup
    res = backup_entry.run(dict(database_url=big_db.url, dest=dest, service='big'))
    assert partials(dest) == []
    assert not os.path.exists(passdirs[0]), 'the killed run\'s passfile was not swept'
    assert sorted(final_names(dest)) == sorted([os.path.basename(res['path']), os.path.basename(res['path']) +
                                                '.sha256'])


def test_pg_dump_dies_with_the_module(big_db, tmp_path):
    """pg_dump blocked on a lock would wait forever; killing the module must end it (PR_SET_PDEATHSIG)."""
    dest = str(tmp_path / 'backups')
    locker = big_db.conn()
    locker.autocommit = False
    try:
        with locker.cursor() as cur:
            cur.execute('LOCK TABLE small IN ACCESS EXCLUSIVE MODE')
        proc = start_runner(dict(database_url=big_db.password_url, dest=dest, service='big'))
        dump_pid = wait_for(lambda: dump_pids(proc.pid))[0]
        app = 'homelab.migrations:big:backup:%'
        wait_for(lambda: big_db.query("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s "
                                      "AND wait_event_type = 'Lock'", (app,)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(lambda: not alive(dump_pid), timeout=5)
        assert final_names(dest) == []
    finally:
        locker.rollback()
        locker.close()
    # its server session (stuck in the lock wait until now) ends too, and nothing was written after all
    wait_for(lambda: not big_db.query('SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s', (app,)),
             timeout=10)
    time.sleep(0.5)
    assert final_names(dest) == []


def _partial_has_data(dest):
    for name in partials(dest):
        path = os.path.join(dest, name)
        if os.path.isdir(path):
            if any('.dat' in n and n != 'toc.dat' for n in os.listdir(path)):
                return True
        elif os.path.getsize(path) > 0:
            return True
    return False


@pytest.mark.parametrize('extra', [{}, {'format': 'directory', 'jobs': 2}], ids=['custom', 'directory-jobs2'])
def test_sigterm_mid_backup_removes_the_partial(big_db, tmp_path, extra):
    dest = str(tmp_path / 'backups')
    proc = start_runner(dict(database_url=big_db.url, dest=dest, service='big', **extra))
    dump_pid = wait_for(lambda: dump_pids(proc.pid))[0]
    wait_for(lambda: _partial_has_data(dest))
    workers = children(dump_pid)
    assert len(workers) == (2 if extra else 0)
    os.kill(proc.pid, signal.SIGTERM)
    out = finish(proc)
    assert out['ok'] is False and 'interrupted by SIGTERM' in out['msg']
    assert os.listdir(dest) == []
    assert not alive(dump_pid)
    assert not [w for w in workers if alive(w)]


# -------------------------------------------------------------------------------------- no password leak
def _cmdlines():
    lines = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as fh:
                    lines[int(entry)] = fh.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            except OSError:
                pass
    return lines


@pytest.mark.parametrize('fmt', ['custom', 'directory'])
def test_password_never_on_a_command_line(big_db, tmp_path, fmt):
    password = big_db.password
    forms = {password, quote(password, safe=''), quote(password)}
    dest = str(tmp_path / 'backups')
    extra = {'jobs': 2} if fmt == 'directory' else {}
    proc = start_runner(dict(database_url=big_db.password_url, dest=dest, service='big', format=fmt, **extra))
    seen_dump = []
    env_checked = []
    while proc.poll() is None:
        for pid, line in _cmdlines().items():
            for form in forms:
                assert form not in line, 'password on the command line of pid %d: %s' % (pid, line)
            if 'pg_dump' in line and '--file=' in line and pid in children(proc.pid):
                seen_dump.append(line)
                if not env_checked:
                    try:
                        with open('/proc/%d/environ' % pid, 'rb') as fh:
                            env = dict(v.split(b'=', 1) for v in fh.read().split(b'\0') if b'=' in v)
                        passfile = env[b'PGPASSFILE'].decode()
                        env[b'mode'] = oct(os.stat(passfile).st_mode & 0o777).encode()
                    except (OSError, KeyError):
                        continue
                    env_checked.append(env)
        time.sleep(0.005)
    out = finish(proc)
    assert out['ok'] is True, out
    assert seen_dump, 'never saw pg_dump running'
    env = env_checked[0]
    assert b'PGPASSWORD' not in env and env[b'mode'] == b'0o600'
    assert env[b'PGHOST'] == b'127.0.0.1' and env[b'PGUSER'] == b'homelab'
    assert all(form.encode() not in b''.join(env.values()) for form in forms)
    # the passfile was removed afterwards
    assert not os.path.exists(env[b'PGPASSFILE'].decode())
    assert not any(form in json.dumps(out) for form in forms)


# ----------------------------------------------------------------------------------------- bad disks
@contextlib.contextmanager
def tmpfs(options):
    where = tempfile.mkdtemp(prefix='homelab-tmpfs-')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', where], check=True)
    try:
        yield where
    finally:
        if subprocess.run(['umount', where], check=False).returncode != 0:
            subprocess.run(['umount', '-l', where], check=False)
        os.rmdir(where)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='mounting a tmpfs needs root')


@pytest.fixture
def medium_db(fresh_db):
    """A few hundred kB compressed: more than a 64k filesystem holds."""
    fresh_db.execute("CREATE TABLE t (id int, v text); "
                     "INSERT INTO t SELECT i, md5(i::text) || md5((-i)::text) FROM generate_series(1, 30000) i")
    return fresh_db


@needs_root
@pytest.mark.parametrize('fmt', ['custom', 'plain', 'directory'])
def test_full_dest_fails_clearly_and_leaves_nothing(medium_db, fmt):
    with tmpfs('size=64k,mode=0700') as where:
        with pytest.raises(BackupError) as err:
            backup_entry.run(dict(database_url=medium_db.password_url, dest=where, service='svc', format=fmt))
        msg = str(err.value)
        assert 'No space left on device' in msg and 'is full' in msg and 'no backup was written' in msg
        assert medium_db.password not in msg
        assert os.listdir(where) == []


@needs_root
def test_full_dest_while_writing_the_checksum(fresh_db):
    # a dump that fits exactly, then nothing left for the .sha256 file
    fresh_db.execute('CREATE TABLE t (x int)')
    with tmpfs('size=4k,nr_inodes=3,mode=0700') as where:
        # the temp dump and the sidecar temp file need 2 inodes besides the root: leave none for the sidecar
        open(os.path.join(where, 'filler'), 'w').close()
        with pytest.raises(BackupError) as err:
            backup_entry.run(dict(database_url=fresh_db.url, dest=where, service='svc'))
        assert 'no backup was written' in str(err.value)
        assert os.listdir(where) == ['filler']


@needs_root
def test_read_only_dest(fresh_db):
    with tmpfs('size=1m,ro,mode=0700') as where:
        with pytest.raises(BackupError) as err:
            backup_entry.run(dict(database_url=fresh_db.password_url, dest=where, service='svc'))
        assert 'Read-only file system' in str(err.value) and 'choose another dest' in str(err.value)
        with pytest.raises(BackupError) as err:
            backup_entry.run(dict(database_url=fresh_db.password_url, dest=os.path.join(where, 'sub'), service='svc'))
        assert 'cannot create dest' in str(err.value)
        with pytest.raises(BackupError) as err:  # check mode sees it too
            backup_entry.run(dict(database_url=fresh_db.password_url, dest=where, service='svc'), check_mode=True)
        assert 'Read-only file system' in str(err.value)
        assert os.listdir(where) == []


@pytest.mark.skipif(os.geteuid() != 0, reason='switches to the postgres user')
def test_unwritable_dest_for_a_non_root_user(fresh_db, tmp_path):
    """The system python as `postgres` (no psycopg2 there: the server check goes through psql)."""
    pwd.getpwnam('postgres')
    root_dir = tempfile.mkdtemp(prefix='homelab-rootonly-')
    os.chmod(root_dir, 0o755)
    try:
        proc = start_runner(dict(database_url=fresh_db.password_url, dest=root_dir, service='svc'),
                            python='/usr/bin/python3', user='postgres')
        out = finish(proc)
        assert out['ok'] is False
        assert 'Permission denied' in out['msg'] and 'may not write there' in out['msg']
        assert fresh_db.password not in out['msg']
        assert os.listdir(root_dir) == []
        out = finish(start_runner(dict(database_url=fresh_db.password_url, dest=root_dir, service='svc',
                                       _check_mode=True), python='/usr/bin/python3', user='postgres'))
        assert out['ok'] is False and 'Permission denied' in out['msg']
        # and a directory it may create is fine for the same user
        ok_dir = os.path.join(tempfile.mkdtemp(prefix='homelab-pgok-'), 'b')
        os.chown(os.path.dirname(ok_dir), pwd.getpwnam('postgres').pw_uid, -1)
        out = finish(start_runner(dict(database_url=fresh_db.password_url, dest=ok_dir, service='svc'),
                                  python='/usr/bin/python3', user='postgres'))
        assert out['ok'] is True, out
        assert os.stat(out['result']['path']).st_uid == pwd.getpwnam('postgres').pw_uid
        subprocess.run(['rm', '-rf', os.path.dirname(ok_dir)], check=True)
    finally:
        os.rmdir(root_dir)
