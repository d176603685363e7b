#!/usr/bin/env python
"""Benchmark: homelab_pg_backup's backup code path against raw ``pg_dump`` on a >= 1 GB database.

    .venv/bin/python benchmarks/bench_backup.py [--reps 3] [--json FILE]

Rows (each repetition runs the pair back to back, alternating which goes first; medians are compared):
  * ``format: custom``: the module's code path (``module_utils.backup.entry.run``, exactly what the module calls:
    tool and server version checks, dump to a temp name, ``pg_restore --list``, sha256, ``.sha256`` file,
    rename) vs ``pg_dump -Fc -f FILE``. Target ratio <= 1.05.
  * ``format: directory, jobs: 2``: the module vs ``pg_dump -Fd -j 2 -f DIR``.

The database lives on a throwaway cluster of its own under ``.cache/bench_backup`` (git-ignored) and is built
once (about 1.2 GB of ordinary, logged tables made with generate_series), then reused by name: a later run
only starts the cluster. ``run(reps=3)`` returns the rows as dicts for the benchmark runner.
"""

import argparse
import json
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests'))

from harness.ansible import ensure_collection_link  # noqa: E402
from harness.pg import _as_postgres, find_bindir, free_port  # noqa: E402

sys.path.insert(0, ensure_collection_link())

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry, tools  # noqa: E402

CACHE = os.path.join(REPO, '.cache', 'bench_backup')
DBNAME = 'bench_backup_1g'
MIN_BYTES = 1024 ** 3
GENERATION_VERSION = 2  # bump to rebuild the cached database
TABLES = (
    # name, rows, columns, the SELECT that fills it (i = generate_series)
    ('events', 3700000,
     'id bigint PRIMARY KEY, at timestamptz NOT NULL, kind int NOT NULL, payload text NOT NULL',
     "SELECT i, timestamptz '2024-01-01' + i * interval '1 second', i % 17, md5(i::text) || md5((i + 1)::text)"),
    ('users', 1300000,
     'id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, bio text',
     "SELECT i, 'user' || i || '@example.org', 'User ' || md5((i * 3)::text), "
     "repeat(substr(md5(i::text), 1, 8), 6) || md5((i * 7)::text)"),
    ('orders', 2600000,
     'id bigint PRIMARY KEY, user_id bigint NOT NULL, total numeric(12, 2) NOT NULL, note text',
     "SELECT i, 1 + i % 1300000, (i % 100000) / 100.0, md5((i * 11)::text) || md5((i * 13)::text)"),
)


class BenchCluster:
    """A PostgreSQL cluster under .cache/bench_backup that survives between runs."""

    def __init__(self, root=CACHE):
        self.bindir = find_bindir()
        self.major = os.path.basename(os.path.dirname(self.bindir))
        self.root = root
        self.datadir = os.path.join(root, 'pg%s' % self.major)
        self.logfile = os.path.join(root, 'server.log')
        self.port = None
        self.owned = False

    def _run(self, argv, check=True):
        out = subprocess.run(_as_postgres() + argv, check=False, capture_output=True, text=True, timeout=600,
                             cwd=self.root)
        if check and out.returncode != 0:
            raise RuntimeError('%s failed: %s %s' % (argv[0], out.stdout, out.stderr))
        return out

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        if os.geteuid() == 0:
            ent = pwd.getpwnam('postgres')
            os.chown(self.root, ent.pw_uid, ent.pw_gid)
        os.chmod(self.root, 0o755)
        if not os.path.exists(os.path.join(self.datadir, 'PG_VERSION')):
            shutil.rmtree(self.datadir, ignore_errors=True)
            self._run([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', 'postgres', '--auth=trust',
                       '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
            with open(os.path.join(self.datadir, 'postgresql.auto.conf'), 'a') as fh:
                fh.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                         "shared_buffers = '256MB'\nmax_wal_size = '4GB'\nwal_level = minimal\n"
                         "max_wal_senders = 0\nfsync = off\nsynchronous_commit = off\n" % self.root)
        status = self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, 'status'], check=False)
        if status.returncode == 0:
            # already running (another run of this benchmark): use it, and leave it running afterwards
            with open(os.path.join(self.datadir, 'postmaster.pid')) as fh:
                self.port = int(fh.read().splitlines()[3])
            self.owned = False
            return self
        self.port = free_port()
        self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', self.logfile, '-w', '-t', '120',
                   '-o', '-p %d' % self.port, 'start'])
        self.owned = True
        return self

    def stop(self):
        if self.owned:
            self._run([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-m', 'fast', '-w', 'stop'],
                      check=False)

    def url(self, dbname=DBNAME):
        return 'postgresql://postgres@127.0.0.1:%d/%s' % (self.port, dbname)

    def psql(self, sql, dbname=DBNAME):
        out = subprocess.run([os.path.join(self.bindir, 'psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
                              '-d', self.url(dbname), '-c', sql], check=False, capture_output=True, text=True,
                             timeout=3600)
        if out.returncode != 0:
            raise RuntimeError('psql failed: %s' % out.stderr)
        return out.stdout.strip()


def database_ready(cluster):
    exists = cluster.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % DBNAME, dbname='postgres')
    if exists != '1':
        return False
    try:
        version = cluster.psql('SELECT version FROM bench_meta WHERE complete')
    except RuntimeError:
        return False
    return version == str(GENERATION_VERSION)


def build_database(cluster, log=print):
    """Create the >= 1 GB database: ordinary tables, filled in parallel (one psql per table)."""
    started = time.time()
    cluster.psql('DROP DATABASE IF EXISTS %s' % DBNAME, dbname='postgres')
    cluster.psql('CREATE DATABASE %s' % DBNAME, dbname='postgres')
    procs = []
    for name, rows, columns, select in TABLES:
        # created and filled in one transaction: with wal_level=minimal the data skips the WAL (still a
        # normal, logged table afterwards)
        fill = ('BEGIN; CREATE TABLE %s (%s); INSERT INTO %s %s FROM generate_series(1, %d) i; COMMIT;'
                % (name, columns, name, select, rows))
        procs.append(subprocess.Popen([os.path.join(cluster.bindir, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                                       '-d', cluster.url(), '-c', fill, '-c', 'VACUUM ANALYZE %s' % name],
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError('generating the benchmark database failed: %s' % err)
    size = int(cluster.psql('SELECT pg_database_size(current_database())'))
    if size < MIN_BYTES:
        raise RuntimeError('the benchmark database is only %d bytes; raise the row counts' % size)
    cluster.psql('CREATE TABLE bench_meta (version int, complete bool); INSERT INTO bench_meta VALUES (%d, true)'
                 % GENERATION_VERSION)
    log('built %s: %.2f GB in %.0f s' % (DBNAME, size / 1024.0 ** 3, time.time() - started))


def _empty_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, 0o700)


def _cpu():
    """CPU seconds of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(func):
    wall, cpu = time.perf_counter(), _cpu()
    value = func()
    return time.perf_counter() - wall, _cpu() - cpu, value


def _raw(pg_dump, url, fmt, jobs, out_dir):
    _empty_dir(out_dir)
    target = os.path.join(out_dir, 'raw.dump' if fmt == 'custom' else 'raw.dir')
    argv = [pg_dump, '-F' + ('c' if fmt == 'custom' else 'd'), '-f', target, '-d', url]
    if jobs > 1:
        argv += ['-j', str(jobs)]
    wall, cpu, _value = _measure(lambda: subprocess.run(argv, check=True))
    return wall, cpu, _size(target)


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def _ours(url, fmt, jobs, out_dir):
    _empty_dir(out_dir)
    params = dict(database_url=url, dest=out_dir, service='bench', format=fmt, jobs=jobs)
    wall, cpu, result = _measure(lambda: entry.run(params))
    return wall, cpu, result['size_bytes']


def run(reps=3, log=print):
    """Build (once) and measure. Returns one dict per row."""
    cluster = BenchCluster().start()
    rows = []
    try:
        if not database_ready(cluster):
            log('building the >= 1 GB benchmark database (once; cached in %s)' % CACHE)
            build_database(cluster, log)
        db_bytes = int(cluster.psql('SELECT pg_database_size(current_database())'))
        url = cluster.url()
        pg_dump, version = tools.find_tool('pg_dump')
        out_dir = os.path.join(CACHE, 'out')
        # warm the caches once (not measured; the parallel dump is the quickest full read)
        _raw(pg_dump, url, 'directory', 2, out_dir)
        for label, fmt, jobs in (('format: custom', 'custom', 1), ('format: directory, jobs: 2', 'directory', 2)):
            ours, raw, ours_cpu, raw_cpu = [], [], [], []
            size = None
            for rep in range(reps):
                order = ('raw', 'ours') if rep % 2 == 0 else ('ours', 'raw')
                for who in order:
                    if who == 'raw':
                        wall, cpu, _raw_size = _raw(pg_dump, url, fmt, jobs, out_dir)
                        raw.append(wall)
                        raw_cpu.append(cpu)
                    else:
                        wall, cpu, size = _ours(url, fmt, jobs, out_dir)
                        ours.append(wall)
                        ours_cpu.append(cpu)
                    log('  %-28s rep %d %-4s %6.2f s wall %6.2f s cpu' % (label, rep + 1, who, wall, cpu))
            row = dict(
                name='backup of a %.2f GiB database, %s' % (db_bytes / 1024.0 ** 3, label),
                ours_median_s=round(statistics.median(ours), 3),
                raw_median_s=round(statistics.median(raw), 3),
                ratio=round(statistics.median(ours) / statistics.median(raw), 3),
                target=1.05 if fmt == 'custom' else None,
                # CPU time of the client side (pg_dump and, for ours, the module's own work): steadier than
                # wall time on a busy machine, and it is where the module's overhead would show
                ours_cpu_median_s=round(statistics.median(ours_cpu), 3),
                raw_cpu_median_s=round(statistics.median(raw_cpu), 3),
                cpu_ratio=round(statistics.median(ours_cpu) / statistics.median(raw_cpu), 3),
                reps=reps, ours_s=[round(x, 3) for x in ours], raw_s=[round(x, 3) for x in raw],
                raw_command='pg_dump -F%s%s -f FILE' % ('c' if fmt == 'custom' else 'd',
                                                        ' -j %d' % jobs if jobs > 1 else ''),
                database_bytes=db_bytes, dump_bytes=size, pg_dump=tools.version_text(version),
            )
            row['ok'] = row['target'] is None or row['ratio'] <= row['target']
            rows.append(row)
        shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        cluster.stop()
    return rows


def print_table(rows, out=sys.stdout):
    head = '%-60s %9s %9s %7s %8s %9s' % ('benchmark (medians)', 'ours (s)', 'raw (s)', 'ratio', 'target',
                                          'cpu ratio')
    out.write(head + '\n' + '-' * len(head) + '\n')
    for row in rows:
        target = '<= %.2f' % row['target'] if row['target'] else '-'
        out.write('%-60s %9.2f %9.2f %7.3f %8s %9.3f\n' % (row['name'], row['ours_median_s'], row['raw_median_s'],
                                                           row['ratio'], target, row['cpu_ratio']))
        out.write('%-60s raw: %s; %d reps; dump %.0f MB; pg_dump %s\n'
                  % ('', row['raw_command'], row['reps'], (row['dump_bytes'] or 0) / 1e6, row['pg_dump']))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args(argv)
    rows = run(reps=args.reps, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print_table(rows)
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump(rows, fh, indent=2)
    return 0 if all(r['ok'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
