"""Helpers for the fault suite (tests/faults): the example homelab run the way a user runs it, then broken.

Builds on tests/integration/roles/migrate_all/test_role.py's ``Homelab`` (the example's three services on fresh
databases, files and outputs in tmp_path, the example inventory pointed at them with extra vars) and adds:

- ``FaultLab.spawn()``: ``ansible-playbook playbooks/migrate.yml -i examples/homelab/inventory`` started in a
  process group of its own, with a marker in its environment so every process of the run (modules, alembic,
  pg_dump) can be found in /proc afterwards, and killed as a whole with ``kill()``;
- ``References``: the schema each service has at each of its revisions when the service's own tool (the
  real ``alembic upgrade``, drizzle-orm's ``migrate()`` through the peer) brought a clean database there;
- ``FaultLab.verify()``: the "nothing lost" checks every fault test ends with: each service at a revision its
  own tool and the collection's status agree on, its schema exactly the reference schema of that revision,
  tracking rows unique, no migration lock held, no session of the collection left on the server, no process
  of the run left alive, every published backup matching its .sha256, every audit line whole JSON.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from harness.ansible import VENV_BIN, ansible_env
from harness.pg import Database
from integration.roles.migrate_all.test_role import (  # noqa: F401  # pylint: disable=unused-import
    ALEMBIC, BOTS, DASHBOARD_REVS, HOMELAB, INVENTORY, ORDER, PLAYBOOK, Homelab, outcomes)

from ansible_collections.homelab.migrations.plugins.module_utils.backup import checksum
from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_holder
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults
from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report

REVISIONS = {'dashboard': [None] + DASHBOARD_REVS}
REVISIONS.update((bot, [None] + tags) for bot, tags in BOTS.items())
MARKER_VAR = 'HOMELAB_FAULT_RUN'


class FaultError(AssertionError):
    pass


def wait_for(predicate, timeout, interval=0.1):
    """Poll ``predicate`` until it returns something truthy; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ processes
def _proc_environ(pid):
    try:
        with open('/proc/%s/environ' % pid, 'rb') as fh:
            return fh.read()
    except OSError:
        return b''


def _proc_state(pid):
    try:
        with open('/proc/%s/stat' % pid, 'rb') as fh:
            data = fh.read()
        return data[data.rindex(b')') + 2:data.rindex(b')') + 3].decode()
    except (OSError, ValueError):
        return None


def proc_cmdline(pid):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as fh:
            return fh.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
    except OSError:
        return ''


def pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def marked_processes(marker):
    """Live (not zombie) processes whose environment carries ``marker``: {pid: cmdline}."""
    needle = ('%s=%s' % (MARKER_VAR, marker)).encode()
    found = {}
    for pid in pids():
        if pid == os.getpid():
            continue
        if needle in _proc_environ(pid).split(b'\0') and _proc_state(pid) not in (None, 'Z', 'X'):
            found[pid] = proc_cmdline(pid)
    return found


def kill_marked(marker):
    """SIGKILL every live process that carries ``marker`` (what a run left behind)."""
    for pid in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Run:
    """One ansible-playbook run started in the background (its own process group)."""

    def __init__(self, lab, argv, env, varsdir):
        self.lab = lab
        self.marker = env[MARKER_VAR]
        self.varsdir = varsdir
        self.out = open(os.path.join(varsdir, 'stdout'), 'w+')
        self.err = open(os.path.join(varsdir, 'stderr'), 'w+')
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err, env=env,
                                     cwd=lab.repo, start_new_session=True)
        self.killed = False
        self.elapsed = None
        self.returncode = None
        self.stdout = self.stderr = self.output = ''

    def kill(self):
        """SIGKILL the whole process group of ansible-playbook (what `kill -9 -PGID` or an OOM of the job does)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.killed = True
        except ProcessLookupError:
            pass
        return self.wait()

    def wait(self, timeout=None):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise FaultError('ansible-playbook did not finish within %ss' % timeout)
        if self.elapsed is None:
            self.elapsed = time.monotonic() - self.started
            self.returncode = self.proc.returncode
            for fh in (self.out, self.err):
                fh.flush()
                fh.seek(0)
            self.stdout, self.stderr = self.out.read(), self.err.read()
            self.out.close()
            self.err.close()
            self.output = self.stdout + self.stderr
            shutil.rmtree(self.varsdir, ignore_errors=True)
        return self

    def running(self):
        return self.proc.poll() is None

    def send(self, signame, group=True):
        """Send ``signame`` to ansible-playbook's process group (a terminal's Ctrl-C, a hangup, kill -9 -PGID) or,
        with ``group=False``, to ansible-playbook alone (AWX's SIGTERM)."""
        if group:
            os.killpg(self.proc.pid, getattr(signal, signame))
        else:
            os.kill(self.proc.pid, getattr(signal, signame))

    def sigkill_when(self, ready, find, timeout=300):
        """Once ``ready()`` holds, SIGKILL every process ``find()`` names (a module, as the OOM killer kills one),
        then wait for the run to end. Fails when the run ends before ``ready()`` or ``find()`` names no process;
        the run is killed rather than left behind. Returns the pids killed."""
        try:
            assert wait_for(lambda: ready() or not self.running(), timeout), 'never ready: %s' % self.tail()
            assert self.running(), 'the run ended first: %s' % self.tail()
            killed = find()
            assert killed, 'no process to kill: %s' % marked_processes(self.marker)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            self.wait(timeout)
        finally:
            if self.running():
                self.kill()
        return killed

    def tail(self, size=3000):
        """The last ``size`` characters of what the run printed so far."""
        try:
            with open(self.out.name) as fh:
                return fh.read()[-size:]
        except (OSError, ValueError):
            return self.stdout[-size:]

    def tasks_started(self):
        """How many task banners (``TASK [...]``) the run has printed so far."""
        try:
            with open(self.out.name) as fh:
                return fh.read().count('TASK [')
        except (OSError, ValueError):
            return 0

    def follow(self, interval=0.01):
        """Wait for the end of the run, noting when each task started: [seconds since the start, per task]."""
        starts = []
        while True:
            count = self.tasks_started()
            while len(starts) < count:
                starts.append(time.monotonic() - self.started)
            if not self.running():
                break
            time.sleep(interval)
        self.wait()
        return starts

    def kill_at(self, task, offset, interval=0.01):
        """SIGKILL ``offset`` seconds after task number ``task`` started (-1: after the start of the run).

        Returns False when the run ended before that point.
        """
        while task >= 0 and self.tasks_started() <= task and self.running():
            time.sleep(interval)
        began = time.monotonic() if task >= 0 else self.started
        while self.running() and time.monotonic() - began < offset:
            time.sleep(interval)
        if not self.running():
            self.wait()
            return False
        self.kill()
        return True


# --------------------------------------------------------------------------------------------------- the lab
class FaultLab(Homelab):
    """The example homelab of test_role.Homelab, plus background runs, fault helpers and the checks."""

    repo = os.path.dirname(os.path.dirname(PLAYBOOK))

    def __init__(self, pg, tmp_path):
        super(FaultLab, self).__init__(pg, tmp_path)
        self.marker = uuid.uuid4().hex
        self.runs = []

    def env(self):
        env = super(FaultLab, self).env()
        env[MARKER_VAR] = self.marker
        return env

    def argv(self, varsfile, check=False, tags=None, verbosity=0):
        argv = [os.path.join(VENV_BIN, 'ansible-playbook'), PLAYBOOK, '-i', INVENTORY, '-e', '@' + varsfile]
        if check:
            argv.append('--check')
        if tags:
            argv += ['--tags', tags]
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        return argv

    def spawn(self, check=False, tags=None, confirm=True, verbosity=0, env=None, **more):
        """Start the playbook in the background; extra vars through a 0600 file as run_playbook does."""
        varsdir = tempfile.mkdtemp(prefix='homelab-fault-')
        varsfile = os.path.join(varsdir, 'vars.json')
        fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, 'w') as fh:
            json.dump(self.extra_vars(confirm, **more), fh)
        full_env = ansible_env(dict(self.env(), **(env or {})))
        run = Run(self, self.argv(varsfile, check, tags, verbosity), full_env, varsdir)
        self.runs.append(run)
        return run

    def reset(self):
        """Fresh, empty databases under the same names; empty backup dir and audit log."""
        for db in self.dbs.values():
            self.pg.drop_database(db.name)
            self.pg.create_database(db.name)
        for path in (self.backup_dir, os.path.dirname(self.audit_log)):
            shutil.rmtree(path, ignore_errors=True)

    # ----------------------------------------------------------------------------------------- observing
    def specs(self, names=tuple(ORDER)):
        return [service_defaults(self.spec(name, depends_on=[])) for name in names]

    def status(self, names=tuple(ORDER)):
        """The collection's own status, read in-process (module_utils.status.build_report)."""
        return build_report(self.specs(names))

    def holders(self):
        """{service: lock holder} for the services whose migration lock is held."""
        held = {}
        for name in ORDER:
            conn = self.dbs[name].conn()
            try:
                holder = lock_holder(conn, name)
            finally:
                conn.close()
            if holder is not None:
                held[name] = holder
        return held

    def sessions(self):
        """Sessions of the collection (application_name homelab.migrations:*) still on the lab's databases."""
        rows = self.pg.connect().cursor()
        try:
            rows.execute("SELECT pid, datname, application_name, state, left(query, 80) FROM pg_stat_activity "
                         "WHERE datname = ANY(%s) AND application_name LIKE 'homelab.migrations%%' "
                         "AND pid <> pg_backend_pid()", ([db.name for db in self.dbs.values()],))
            return rows.fetchall()
        finally:
            rows.connection.close()

    def alembic_heads_table(self):
        db = self.dbs['dashboard']
        if db.query("SELECT to_regclass('public.alembic_version')")[0][0] is None:
            return []
        return [r[0] for r in db.query('SELECT version_num FROM alembic_version ORDER BY 1')]

    def drizzle_rows(self, name):
        db = self.dbs[name]
        if db.query("SELECT to_regclass('drizzle.__drizzle_migrations')")[0][0] is None:
            return []
        return db.query('SELECT hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id')

    def published_backups(self):
        """[(name, ok, why)] for every data file in the backup dir (names as the backup module makes them)."""
        out = []
        if not os.path.isdir(self.backup_dir):
            return out
        for name in sorted(os.listdir(self.backup_dir)):
            if name.startswith('.') or name.endswith('.sha256'):
                continue
            path = os.path.join(self.backup_dir, name)
            side = checksum.read_sidecar(path + '.sha256')
            fmt = {'dump': 'custom', 'sql': 'plain', 'dir': 'directory'}.get(name.rsplit('.', 1)[-1])
            if side is None:
                out.append((name, False, 'no .sha256 beside it'))
                continue
            digest, _size = checksum.backup_digest(path, fmt)
            out.append((name, digest == side[0] and side[1] == name, 'sha256 %s, .sha256 says %s' % (digest, side)))
        return out

    def partials(self):
        if not os.path.isdir(self.backup_dir):
            return []
        return sorted(n for n in os.listdir(self.backup_dir) if '.partial-' in n)

    def revisions(self, name):
        """[None, first, ..., last] of a service, from the lab's copy of its files (a test may add some)."""
        if name == 'dashboard':
            return REVISIONS[name]
        with open(os.path.join(self.services_dir, name, 'migrations', 'meta', '_journal.json')) as fh:
            return [None] + [e['tag'] for e in json.load(fh)['entries']]

    def add_migration(self, name, tag, sql, down_sql=None):
        """Append a migration to a bot's journal (a minute after the last one)."""
        folder = os.path.join(self.services_dir, name, 'migrations')
        journal_path = os.path.join(folder, 'meta', '_journal.json')
        with open(journal_path) as fh:
            journal = json.load(fh)
        last = journal['entries'][-1]
        journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=tag))
        with open(journal_path, 'w') as fh:
            json.dump(journal, fh, indent=2)
        with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
            fh.write(sql)
        if down_sql is not None:
            with open(os.path.join(folder, tag + '.down.sql'), 'w') as fh:
                fh.write(down_sql)

    # ---------------------------------------------------------------------------------------------- checks
    def verify(self, peer, refs, settle=20.0, expect=None):
        """The "nothing lost" checks. Returns {service: revision} (None: nothing applied).

        ``expect`` ({service: revision}) additionally pins where each service must be.
        """
        # a killed run's backends end once the server notices their client is gone; give them time
        left = wait_for(lambda: not self.holders() and not self.sessions(), settle)
        holders = self.holders()
        assert not holders, 'migration lock(s) still held after %ss: %s' % (settle, holders)
        assert left or not self.sessions(), 'sessions of the collection left on the server: %s' % self.sessions()
        wait_for(lambda: not marked_processes(self.marker), 10)
        orphans = marked_processes(self.marker)
        assert not orphans, 'processes of a run still alive after it ended: %s' % orphans
        report = self.status()
        where = {}
        for name in ORDER:
            entry = report['services'][name]
            assert entry['status'] in ('up_to_date', 'pending'), (name, entry)
            assert not entry['problems'], (name, entry['problems'])
            assert not entry['lock']['held'], (name, entry['lock'])
            current = entry['current_revision']
            revisions = self.revisions(name)
            assert current in revisions, (name, current)
            index = revisions.index(current)
            assert entry['applied'] == index and entry['pending'] == len(revisions) - 1 - index, (name, entry)
            # the service's own tool agrees
            if name == 'dashboard':
                assert self.alembic_current() == ([current] if current else []), 'alembic current disagrees'
                assert self.alembic_heads_table() == ([current] if current else []), 'alembic_version rows'
            else:
                tags = revisions[1:]
                theirs = peer.status(os.path.join(self.services_dir, name, 'migrations'), self.dbs[name].url)
                assert theirs['pending'] == tags[index:], (name, 'drizzle-orm says pending', theirs['pending'])
                rows = self.drizzle_rows(name)
                assert len(rows) == index, (name, 'tracking rows', rows)
                assert len(set(r[0] for r in rows)) == len(rows), (name, 'a migration recorded twice', rows)
                assert self.drizzle_applied(name) == tags[:index], (name, self.drizzle_applied(name))
            # nothing half-applied: the schema is exactly what the tool makes at that revision
            schema = self.dbs[name].schema_dump()
            assert refs.matches(name, current, schema), refs.explain(name, current, schema)
            where[name] = current
        for name, ok, why in self.published_backups():
            assert ok, 'backup %s does not match its .sha256: %s' % (name, why)
        self.audit()  # every line whole JSON (read_records raises on a torn line)
        if expect is not None:
            assert where == expect, (where, expect)
        return where


# ------------------------------------------------------------------------------------------------ references
class References:
    """Schema dumps of every service at every revision, made by the services' own tools on clean databases."""

    def __init__(self, pg, peer, tmp):
        self.schemas = dict((name, {}) for name in ORDER)
        self.empty = dict((name, set()) for name in ORDER)
        scratch = [Database(pg, pg.create_database()) for _db in range(3)]
        try:
            self._alembic(scratch[0], tmp)
            for db, bot in zip(scratch[1:], BOTS):
                self._drizzle(db, bot, peer, tmp)
        finally:
            for db in scratch:
                pg.drop_database(db.name)

    def _alembic(self, db, tmp):
        self.schemas['dashboard'][None] = db.schema_dump()
        self.empty['dashboard'].add(db.schema_dump())
        cwd = os.path.join(HOMELAB, 'services', 'dashboard')
        env = dict(os.environ, DATABASE_URL=db.url)
        for rev in DASHBOARD_REVS:
            out = subprocess.run([ALEMBIC, 'upgrade', rev], cwd=cwd, env=env, check=False, capture_output=True,
                                 text=True, timeout=180)
            assert out.returncode == 0, out.stderr
            self.schemas['dashboard'][rev] = db.schema_dump()

    def _drizzle(self, db, bot, peer, tmp):
        src = os.path.join(HOMELAB, 'services', bot, 'migrations')
        self.schemas[bot][None] = db.schema_dump()
        self.empty[bot].add(db.schema_dump())
        tags = BOTS[bot]
        with open(os.path.join(src, 'meta', '_journal.json')) as fh:
            journal = json.load(fh)
        for count in range(0, len(tags) + 1):
            folder = os.path.join(str(tmp), 'ref-%s-%d' % (bot, count))
            shutil.copytree(src, folder)
            with open(os.path.join(folder, 'meta', '_journal.json'), 'w') as fh:
                json.dump(dict(journal, entries=journal['entries'][:count]), fh)
            peer.migrate(folder, db.url)
            if count == 0:
                # drizzle-orm creates its schema and table even with nothing to apply
                self.empty[bot].add(db.schema_dump())
            else:
                self.schemas[bot][tags[count - 1]] = db.schema_dump()

    def matches(self, name, revision, schema):
        if revision is None:
            return schema in self.empty[name]
        return schema == self.schemas[name].get(revision)

    def explain(self, name, revision, schema):
        import difflib
        if revision is not None and revision not in self.schemas[name]:
            return '%s at %s: no reference schema for that revision (a test-only migration?)' % (name, revision)
        want = self.schemas[name][revision]
        diff = '\n'.join(difflib.unified_diff(want.splitlines(), schema.splitlines(), 'reference', 'actual',
                                              lineterm='', n=1))
        return '%s at %s: schema differs from a clean run of its tool to that revision:\n%s' % (
            name, revision, diff[:4000])


_REFERENCES = {}


def references(pg, peer, tmp_path_factory):
    """The References of this pg server, built once per session (shared by every fault test module)."""
    key = (pg.host, pg.port)
    if key not in _REFERENCES:
        _REFERENCES[key] = References(pg, peer, tmp_path_factory.mktemp('references'))
    return _REFERENCES[key]


HEADS = dict((name, revs[-1]) for name, revs in REVISIONS.items())


def last_task(stdout):
    """The name of the last task a (killed) run had started, from its stdout."""
    name = None
    for line in stdout.splitlines():
        if line.startswith('TASK ['):
            name = line[6:line.rfind(']')]
    return (name or '(before the first task)').replace('homelab.migrations.migrate_all : ', '')
