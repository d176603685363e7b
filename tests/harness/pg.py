"""Throwaway PostgreSQL clusters for the tests.

A cluster is started from the system's server binaries (``PG_BINDIR``, ``pg_config --bindir``,
``/usr/lib/postgresql/*/bin``), as the ``postgres`` OS user when the tests run as root, in a temp
directory, on a free port. Trust auth on 127.0.0.1 for the superuser ``postgres``, and password
(scram) auth for the role ``homelab`` whose password contains URL-hostile characters and a canary.
``HOMELAB_TEST_PG_DSN`` points the session server at an existing server instead.
"""

import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from urllib.parse import quote, urlsplit

import psycopg2

PASSWORD_ROLE = 'homelab'
INSTALL_HINT = ('no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them with '
                '`apt-get install postgresql` (Debian/Ubuntu), set PG_BINDIR to their directory, or set '
                'HOMELAB_TEST_PG_DSN=postgresql://postgres@host:port/postgres to use an existing server')


class PgHarnessError(RuntimeError):
    pass


def find_bindir():
    candidates = []
    if os.environ.get('PG_BINDIR'):
        candidates.append(os.environ['PG_BINDIR'])
    try:
        out = subprocess.run(['pg_config', '--bindir'], check=False, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass

    def version_key(path):
        try:
            return float(path.split('/')[-2])
        except ValueError:
            return 0.0
    candidates.extend(sorted(glob.glob('/usr/lib/postgresql/*/bin'), key=version_key, reverse=True))
    for cand in candidates:
        if all(os.access(os.path.join(cand, b), os.X_OK) for b in ('initdb', 'pg_ctl', 'postgres')):
            return cand
    raise PgHarnessError(INSTALL_HINT)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _as_postgres():
    """argv prefix that runs a command as the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam('postgres')
    except KeyError:
        raise PgHarnessError('running as root and there is no `postgres` OS user to run initdb as; '
                             'install the postgresql package (it creates the user) or run as a normal user')
    return ['runuser', '-u', 'postgres', '--']


def new_password():
    # a canary with characters that need URL quoting
    return 'Cnry%s@:/%%?' % uuid.uuid4().hex[:12]


class PgServer:
    """One cluster (or an existing server when ``dsn`` is given)."""

    def __init__(self, dsn=None):
        self.external = dsn is not None
        self.password = new_password()
        self.superuser = 'postgres'
        self.tmp = None
        self.proc_owner = None
        if dsn:
            parts = urlsplit(dsn)
            self.host = parts.hostname or '127.0.0.1'
            self.port = parts.port or 5432
            self.superuser = parts.username or 'postgres'
            self._super_password = parts.password
            self.bindir = None
            try:
                self.bindir = find_bindir()
            except PgHarnessError:
                pass
        else:
            self.bindir = find_bindir()
            self._super_password = None
            self.host = '127.0.0.1'
            self.port = free_port()
            self.tmp = tempfile.mkdtemp(prefix='homelab-pg-')
            os.chmod(self.tmp, 0o755)
            if os.geteuid() == 0:
                ent = pwd.getpwnam('postgres')
                os.chown(self.tmp, ent.pw_uid, ent.pw_gid)
            self.datadir = os.path.join(self.tmp, 'data')
            self.logfile = os.path.join(self.tmp, 'server.log')
            self._initdb()

    # ---------------------------------------------------------------- cluster
    def _run(self, argv, **kw):
        return subprocess.run(_as_postgres() + argv, check=False, capture_output=True, text=True,
                              timeout=kw.pop('timeout', 120), cwd=self.tmp, **kw)

    def _initdb(self):
        out = self._run([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', 'postgres',
                         '--auth-local=trust', '--auth-host=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        if out.returncode != 0:
            raise PgHarnessError('initdb failed: %s' % (out.stderr or out.stdout))
        with open(os.path.join(self.datadir, 'pg_hba.conf'), 'w') as fh:
            fh.write('local all all trust\n'
                     'host all %s 127.0.0.1/32 scram-sha-256\n'
                     'host all %s ::1/128 scram-sha-256\n'
                     'host all all 127.0.0.1/32 trust\n'
                     'host all all ::1/128 trust\n' % (PASSWORD_ROLE, PASSWORD_ROLE))
        with open(os.path.join(self.datadir, 'postgresql.auto.conf'), 'a') as fh:
            fh.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                     "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"
                     % (self.port, self.tmp))

    def start(self):
        if self.external:
            return
        out = self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', self.logfile, '-w',
                         '-t', '60', 'start'])
        if out.returncode != 0:
            log = ''
            try:
                with open(self.logfile) as fh:
                    log = fh.read()[-2000:]
            except OSError:
                pass
            raise PgHarnessError('pg_ctl start failed: %s %s\n%s' % (out.stdout, out.stderr, log))
        self._wait_ready()

    def _wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                psycopg2.connect(self.url('postgres'), connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode='fast'):
        if self.external or not os.path.exists(os.path.join(self.datadir, 'postmaster.pid')):
            return
        self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-m', mode, '-w', 'stop'])

    def restart(self, mode='fast'):
        self.stop(mode)
        self.start()

    def kill(self):
        """SIGKILL the postmaster (a crash). start() brings it back through recovery."""
        pidfile = os.path.join(self.datadir, 'postmaster.pid')
        with open(pidfile) as fh:
            pid = int(fh.readline())
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        # the children notice the postmaster is gone; wait for the port to close
        time.sleep(0.5)

    def destroy(self):
        try:
            self.stop('immediate')
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -------------------------------------------------------------- databases
    def url(self, dbname='postgres', password=False):
        if password:
            return 'postgresql://%s:%s@%s:%d/%s' % (
                PASSWORD_ROLE, quote(self.password, safe=''), self.host, self.port, dbname)
        auth = self.superuser
        if self._super_password:
            auth += ':' + quote(self._super_password, safe='')
        return 'postgresql://%s@%s:%d/%s' % (auth, self.host, self.port, dbname)

    def connect(self, dbname='postgres'):
        conn = psycopg2.connect(self.url(dbname))
        conn.autocommit = True
        return conn

    def setup_roles(self):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (PASSWORD_ROLE,))
                verb = 'ALTER' if cur.fetchone() else 'CREATE'
                cur.execute('%s ROLE %s LOGIN SUPERUSER PASSWORD %%s' % (verb, PASSWORD_ROLE), (self.password,))
        finally:
            conn.close()

    def create_database(self, name=None):
        name = name or 't_%s' % uuid.uuid4().hex[:12]
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE "%s" OWNER %s' % (name, PASSWORD_ROLE))
        finally:
            conn.close()
        return name

    def drop_database(self, name):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        finally:
            conn.close()

    def tool(self, name):
        """Path of a client binary (pg_dump, psql...) of the server's version when known."""
        if self.bindir and os.path.exists(os.path.join(self.bindir, name)):
            return os.path.join(self.bindir, name)
        return shutil.which(name) or name


class Database:
    """A fresh database on a PgServer."""

    def __init__(self, server, name):
        self.server = server
        self.name = name

    @property
    def url(self):
        """Superuser URL, trust auth, no password."""
        return self.server.url(self.name)

    @property
    def password_url(self):
        """URL of the password role (owner of the database); contains the canary password."""
        return self.server.url(self.name, password=True)

    @property
    def password(self):
        return self.server.password

    def conn(self):
        return self.server.connect(self.name)

    def query(self, sql, params=None):
        conn = self.conn()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def execute(self, sql, params=None):
        self.query(sql, params)

    def tables(self):
        return [r[0] for r in self.query(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1")]

    def schema_dump(self):
        out = subprocess.run([self.server.tool('pg_dump'), '--schema-only', '--no-owner', '--no-privileges',
                              self.url], check=False, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise PgHarnessError('pg_dump failed: %s' % out.stderr)
        # drop the \restrict nonce lines newer pg_dump prints (random per run)
        return '\n'.join(line for line in out.stdout.splitlines()
                         if not line.startswith(('\\restrict', '\\unrestrict')))

    def checksums(self):
        """{table: (row count, md5 of the sorted rows)} for every user table."""
        result = {}
        for table in self.tables():
            rows = self.query('SELECT t::text FROM %s t' % table)
            texts = sorted(r[0] for r in rows)
            result[table] = (len(texts), hashlib.md5('\n'.join(texts).encode()).hexdigest())
        return result

    def snapshot(self):
        return {'schema': self.schema_dump(), 'rows': self.checksums()}
