#!/usr/bin/env python
"""`make bench`: homelab.migrations against the raw tools, one table.

    .venv/bin/python benchmarks/run.py                 # every row, 5 repetitions (under 10 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick         # tiny sizes, 1 repetition (a smoke test)
    .venv/bin/python benchmarks/run.py --only 2,4      # some rows
    .venv/bin/python benchmarks/run.py --reps 5 --out /tmp/bench.json

Prints the table and writes it with the machine's facts as JSON to benchmarks/results/ (git-ignored):
``bench-<UTC date>.json`` and ``latest.json``. Exit code 0 even when a target is missed (the table
says FAIL); 1 when a benchmark could not run at all; 2 for bad arguments. See benchmarks/README.md.
"""

import argparse
import inspect
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

ROWS = ('1', '2', '3', '4', '5', '6', '7', '8')
BACKUP_WAIT = 600  # seconds row 6 waits for another bench_backup run to finish


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='homelab.migrations benchmarks against the raw tools')
    parser.add_argument('--quick', action='store_true', help='tiny sizes and 1 repetition (a smoke test, minutes '
                                                             'less; the figures mean little)')
    parser.add_argument('--only', default='', help='comma-separated row numbers to run, e.g. 1,3 (default: all)')
    parser.add_argument('--reps', type=int, default=None,
                        help='repetitions per side (default 5, --quick 1; row 7: at most 3; row 6: --backup-reps)')
    parser.add_argument('--backup-reps', type=int, default=None,
                        help='repetitions of row 6 (bench_backup.py: each is a custom and a 2-job directory dump of '
                             'a >= 1 GB database, ours and raw; default min(reps, 2) to stay under 10 minutes)')
    parser.add_argument('--out', default=None, help='JSON file to write (default benchmarks/results/bench-<date>.json '
                                                    'and latest.json)')
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.only.split(',') if x.strip()] if args.only else list(ROWS)
    bad = [x for x in only if x not in ROWS]
    if bad:
        parser.error('--only: unknown row(s) %s; rows are %s' % (', '.join(bad), ', '.join(ROWS)))
    args.only = only
    if args.reps is None:
        args.reps = 1 if args.quick else 5
    if args.reps < 1:
        parser.error('--reps must be at least 1')
    if args.backup_reps is None:
        args.backup_reps = min(args.reps, 2)
    if args.backup_reps < 1:
        parser.error('--backup-reps must be at least 1')
    return args


def log(text):
    sys.stderr.write(text + '\n')
    sys.stderr.flush()


def backup_activity():
    """Processes of another bench_backup run (the script, its pg_dumps, sessions on its database), or []."""
    mine = os.getpid()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == mine:
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as fh:
                argv = fh.read().decode('utf-8', 'replace').split('\0')
        except OSError:
            continue
        text = ' '.join(argv)
        if 'bench_backup' not in text:
            continue
        if argv[0].endswith('/postgres') and '-D' in argv:
            continue  # the cluster itself, possibly idle: bench_backup.run() reuses it safely
        found.append('%s %s' % (entry, text.strip()[:80]))
    return found


def wait_for_backup_quiet(log, timeout=BACKUP_WAIT):
    """Wait (up to ``timeout`` s) while another bench_backup run dumps: two at once would time each other."""
    deadline = time.time() + timeout
    said = False
    while True:
        busy = backup_activity()
        if not busy:
            return None
        if time.time() > deadline:
            return busy
        if not said:
            log('[bench] row 6: another bench_backup run is active (%s); waiting up to %ds for it to finish'
                % (busy[0], timeout))
            said = True
        time.sleep(5)


def backup_rows(reps, quick):
    """Row 6 from benchmarks/bench_backup.py (the backup engineer's): run(reps=...) -> [row dicts]."""
    try:
        import bench_backup
    except ImportError as exc:
        raise common.BenchError('benchmarks/bench_backup.py is missing or broken (%s); row 6 needs it' % exc)
    busy = wait_for_backup_quiet(log)
    params = inspect.signature(bench_backup.run).parameters
    kwargs = {'reps': reps}
    if 'quick' in params:
        kwargs['quick'] = quick
    if 'log' in params:
        kwargs['log'] = log
    rows = bench_backup.run(**kwargs)
    if isinstance(rows, dict):
        rows = [rows]
    out = []
    for i, row in enumerate(rows or []):
        out.append(common.normalize_row(row, '6' if i == 0 else '6%s' % 'abcdefgh'[i]))
    if not out:
        raise common.BenchError('bench_backup.run() returned no rows')
    if busy:
        for row in out:
            row['notes'] = '; '.join(filter(None, ['measured while another bench_backup run was active (%s): not '
                                                   'comparable' % busy[0], row.get('notes')]))
    return describe_backup_rows(out)


def describe_backup_rows(rows):
    for row in rows:
        extra = row['extra']
        bits = []
        if extra.get('raw_command'):
            bits.append('raw = %s' % extra['raw_command'])
        if extra.get('cpu_ratio') is not None:
            bits.append('client CPU ratio %s' % extra['cpu_ratio'])
        if extra.get('dump_bytes'):
            bits.append('dump %.0f MB' % (extra['dump_bytes'] / 1e6))
        bits.append('in-process timing by bench_backup.py (no peak memory)')
        row['notes'] = '; '.join(filter(None, [row.get('notes')] + bits))
    return rows


QUICK_BACKUP_ROWS = 200000


def quick_backup_rows(server, reps):
    """--quick stand-in for row 6: the same code path (module_utils.backup.entry.run in a fresh interpreter) vs
    `pg_dump -Fc` on a small database of the bench server, instead of bench_backup.py's >= 1 GB one."""
    import shutil
    import tempfile
    db = common.fresh_database(server, 'bkp')
    tmp = tempfile.mkdtemp(prefix='bench-backup-')
    try:
        conn = server.connect(db)
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE t AS SELECT i AS id, md5(i::text) AS payload FROM generate_series(1, %s) i',
                        (QUICK_BACKUP_ROWS,))
            cur.execute('SELECT pg_database_size(current_database())')
            size = cur.fetchone()[0]
        conn.close()
        url = server.url(db, password=True)
        ours_runs, raw_runs = [], []
        for rep in range(reps):
            dest = os.path.join(tmp, 'ours%d' % rep)
            params = {'database_url': url, 'dest': dest, 'service': 'bench', 'format': 'custom'}
            child, answer = common.code_child('backup', {'params': params}, tmp)
            if answer['failed'] or not answer['size_bytes']:
                raise common.BenchError('the backup code path failed: %s' % answer.get('msg'))
            ours_runs.append(child)
            raw = common.run_child([server.tool('pg_dump'), '-Fc', '-f', os.path.join(tmp, 'raw%d.dump' % rep),
                                    '-h', server.host, '-p', str(server.port), '-U', 'homelab', db],
                                   env=dict(os.environ, PGPASSWORD=server.password))
            raw_runs.append(raw.check('pg_dump -Fc'))
        return [common.make_row('6', 'backup: %.0f MB database, custom (--quick)' % (size / 1e6), ours_runs,
                                raw_runs, ('ratio', 1.05),
                                notes='--quick stand-in: a small database instead of bench_backup.py\'s >= 1 GB '
                                      'one; the full run uses bench_backup.run()')]
    finally:
        server.drop_database(db)
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(args):
    import bench_apply
    import bench_preflight
    import bench_run
    import bench_status
    rows = []
    started = time.time()
    with common.pg_server() as server:
        info = common.machine_info(server)
        log('[bench] %s, %s CPU(s) (%s), PostgreSQL %s; rows %s, %d rep(s)%s'
            % (info['date'], info['nproc'], info['cpu_model'], info.get('postgresql_server'), ','.join(args.only),
               args.reps, ', quick' if args.quick else ''))
        rows += bench_status.run(server, reps=args.reps, quick=args.quick, only=args.only, log=log)
        rows += bench_apply.run(server, reps=args.reps, quick=args.quick, only=args.only, log=log)
        rows += bench_run.run(server, reps=args.reps, quick=args.quick, only=args.only, log=log)
        rows += bench_preflight.run(server, reps=args.reps, quick=args.quick, only=args.only, log=log)
        if '6' in args.only and args.quick:
            log('[bench] row 6: backup (--quick: a small database) ...')
            rows += _as_list(common.guarded('6', 'backup: pg_backup vs pg_dump -Fc',
                                            lambda: quick_backup_rows(server, args.reps), log=log))
    if '6' in args.only and not args.quick:  # its own cluster (a >= 1 GB database), after ours is gone
        log('[bench] row 6: backup ...')
        rows += _as_list(common.guarded('6', 'backup: pg_backup vs pg_dump -Fc',
                                        lambda: backup_rows(args.backup_reps, args.quick), log=log))
    rows.sort(key=lambda r: (int(''.join(ch for ch in r['row'] if ch.isdigit()) or 0), r['row']))
    info['duration_s'] = round(time.time() - started, 1)
    return info, rows


def _as_list(value):
    return value if isinstance(value, list) else [value]


def write_results(info, rows, args):
    doc = {'machine': info, 'quick': args.quick, 'reps': args.reps, 'backup_reps': args.backup_reps, 'only': args.only,
           'rows': rows,
           'table': common.format_table(rows)}
    paths = []
    if args.out:
        paths.append(args.out)
    else:
        os.makedirs(common.RESULTS, exist_ok=True)
        stamp = info['date'].replace(':', '').replace('-', '')
        paths.append(os.path.join(common.RESULTS, 'bench-%s%s.json' % (stamp, '-quick' if args.quick else '')))
        paths.append(os.path.join(common.RESULTS, 'latest%s.json' % ('-quick' if args.quick else '')))
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, 'w') as fh:
            json.dump(doc, fh, indent=2)
            fh.write('\n')
    return paths


def main(argv=None):
    args = parse_args(argv)
    info, rows = run_all(args)
    print('homelab.migrations benchmarks  %s  %s x %s, Python %s, %s, PostgreSQL %s, %d rep(s)%s  (%.0fs)'
          % (info['date'], info['nproc'], info['cpu_model'], info['python'], info.get('ansible_core'),
             info.get('postgresql_server'), args.reps, ', --quick' if args.quick else '', info['duration_s']))
    print(common.format_table(rows))
    for path in write_results(info, rows, args):
        print('written: %s' % os.path.relpath(path))
    broken = [r['row'] for r in rows if str(r.get('notes', '')).startswith('ERROR')]
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(main())
