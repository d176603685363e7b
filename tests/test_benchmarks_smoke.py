"""`make bench` in its --quick mode: every row is there, with sane numbers (no wall-clock thresholds).

The runner starts its own throwaway PostgreSQL cluster, the real alembic CLI, the drizzle-orm peer and
ansible-playbook, exactly as `make bench` does, with tiny sizes and one repetition.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, 'benchmarks')
RUN = os.path.join(BENCH, 'run.py')
ROWS = ['1', '2', '3', '4', '5', '6', '7', '8']

if BENCH not in sys.path:
    sys.path.insert(0, BENCH)

import common  # noqa: E402  (benchmarks/common.py)


@pytest.fixture(scope='module')
def quick(tmp_path_factory, drizzle_peer):
    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    proc = subprocess.run([sys.executable, RUN, '--quick', '--out', str(out)], capture_output=True, text=True,
                          timeout=1200, cwd=REPO, stdin=subprocess.DEVNULL, check=False)
    assert out.exists(), ('no JSON written (rc=%s)\nSTDOUT:\n%s\nSTDERR:\n%s'
                          % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc, json.loads(out.read_text())


@pytest.mark.peer
@pytest.mark.slow
def test_quick_run_prints_and_writes_every_row(quick):
    proc, doc = quick
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert [r['row'] for r in doc['rows']] == ROWS
    assert doc['quick'] is True and doc['reps'] == 1
    lines = proc.stdout.splitlines()
    for row in doc['rows']:
        assert not row['notes'].startswith('ERROR'), row['notes']
        assert any(line.split()[:1] == [row['row']] and row['name'][:20] in line for line in lines), \
            'row %s missing from the printed table:\n%s' % (row['row'], proc.stdout)
    assert doc['table'] in proc.stdout
    header = next(line for line in lines if line.startswith('row '))
    for title in ('ours s', 'raw s', 'ratio', 'target', 'result', 'peak MB'):
        assert title in header


@pytest.mark.peer
@pytest.mark.slow
def test_quick_rows_have_sane_numbers(quick):
    _proc, doc = quick
    for row in doc['rows']:
        what = 'row %s: %r' % (row['row'], row)
        assert row['ours_s'] > 0 and row['raw_s'] > 0, what
        assert row['ratio'] == pytest.approx(row['ours_s'] / row['raw_s'], rel=0.01, abs=0.002), what
        assert row['overhead_s'] == pytest.approx(row['ours_s'] - row['raw_s'], abs=0.002), what
        assert row['reps'] == 1 and len(row['ours_runs']) == 1 and len(row['raw_runs']) == 1, what
        # every command is measured as a child: its peak RSS is that of an interpreter/node/pg_dump, not ours
        assert 1 < row['peak_mb'] < 2048 and 1 < row['raw_peak_mb'] < 2048, what
        target = row['target']
        if row['row'] in ('7', '8'):  # information rows: no target (8: --check with pre-flight vs without)
            assert target == '' and row['passed'] is None, what
            continue
        assert target, what
        if target.startswith('ratio <= '):
            assert row['passed'] == (row['ratio'] <= float(target.split()[-1])), what
        elif target.startswith('+'):
            assert row['passed'] == (row['overhead_s'] <= float(target[1:].rstrip('s max'))), what
        elif row['row'] == '3':
            assert row['passed'] == (row['extra']['task_median_s'] < 3.0), what


@pytest.mark.peer
@pytest.mark.slow
def test_quick_rows_measured_the_right_work(quick):
    _proc, doc = quick
    rows = dict((r['row'], r) for r in doc['rows'])
    # row 1: the raw side read the homelab at its prepared state (stream-bot one behind, discord-bot at head)
    said = rows['1']['extra']['raw_said']
    assert said['stream-bot'] == {'applied': 4, 'pending': 1}
    assert said['discord-bot'] == {'applied': 3, 'pending': 0}
    assert rows['1']['extra']['profile']['tasks'], 'no per-task profile of the --check run'
    # rows 2-5 sizes
    assert rows['2']['extra']['revisions'] > 100
    assert rows['3']['extra']['services'] >= 6 and rows['3']['extra']['task_s'][0] > 0
    assert rows['4']['extra']['migrations'] > 10 and rows['4']['extra']['statements'] >= 4 * rows['4']['extra'][
        'migrations']
    assert rows['5']['extra']['revisions'] > 10
    # row 7: the split adds up to the run's wall time
    split = rows['7']['extra']['split']
    parts = (split['ansible_startup_and_between_tasks_s'] + split['ansible_controller_tasks_s']
             + split['module_overhead_s'] + split['tools_and_database_s'])
    assert parts == pytest.approx(split['total_s'], abs=0.01)
    assert all(v > 0 for v in split['inside_modules_s'].values()), split
    assert set(rows['7']['extra']['raw_parts_s']) == {'status', 'pg_dump', 'alembic upgrade', 'drizzle migrate()'}


@pytest.mark.peer
@pytest.mark.slow
def test_quick_machine_facts(quick):
    _proc, doc = quick
    info = doc['machine']
    assert info['nproc'] == os.cpu_count()
    assert info['cpu_model'] and info['python'] and info['date'].endswith('Z')
    assert 'core' in info['ansible_core']
    assert info['postgresql_server'] and info['postgresql_client'].startswith('pg_dump')
    assert info['alembic'] and info['drizzle']['drizzle-orm']


@pytest.mark.parametrize('args, message', [
    (['--only', '9'], 'unknown row(s) 9'),
    (['--only', '1,x'], 'unknown row(s) x'),
    (['--reps', '0'], 'at least 1'),
])
def test_bad_arguments_are_refused_before_anything_runs(args, message):
    proc = subprocess.run([sys.executable, RUN] + args, capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_launcher_reports_the_commands_own_peak_memory():
    """The peak of a child is its own, not this (large) test process's: the launcher stands between."""
    ballast = bytearray(300 * 1024 * 1024)  # make this process big; a plain fork would carry this over
    ballast[::4096] = b'x' * len(ballast[::4096])
    small = common.run_child(['true'])
    fill = 'b = bytearray(200 * 1024 * 1024); b[::4096] = b"x" * len(b[::4096])'
    big = common.run_child([sys.executable, '-c', fill])
    del ballast
    assert small.rc == 0 and small.peak_mb < 64, small.peak_mb
    assert big.rc == 0 and 200 <= big.peak_mb < 300, big.peak_mb
    failed = common.run_child(['sh', '-c', 'echo out; echo err >&2; exit 3'])
    assert (failed.rc, failed.stdout, failed.stderr) == (3, 'out\n', 'err\n')
    with pytest.raises(common.BenchError, match='exited 3'):
        failed.check()


def test_backup_rows_from_bench_backup_are_normalized():
    """bench_backup.run() rows (medians as *_median_s, runs as lists, a numeric target) fit the table."""
    custom = {'name': 'backup of a 1.20 GiB database, format: custom', 'ours_median_s': 31.0, 'raw_median_s': 30.0,
              'ratio': 1.033, 'target': 1.05, 'ok': True, 'reps': 3, 'ours_s': [31.0, 31.5, 30.9],
              'raw_s': [30.0, 30.2, 29.9], 'cpu_ratio': 1.01, 'raw_command': 'pg_dump -Fc -f FILE'}
    directory = dict(custom, name='backup, format: directory, jobs: 2', target=None, ratio=0.98, ours_median_s=14.7,
                     raw_median_s=15.0)
    over = dict(custom, ratio=1.2, ours_median_s=36.0, ok=False)
    rows = [common.normalize_row(r, n) for r, n in ((custom, '6'), (directory, '6b'), (over, '6c'))]
    assert [r['row'] for r in rows] == ['6', '6b', '6c']
    assert rows[0]['ours_s'] == 31.0 and rows[0]['raw_s'] == 30.0 and rows[0]['ours_runs'] == [31.0, 31.5, 30.9]
    assert (rows[0]['target'], rows[0]['passed']) == ('ratio <= 1.05', True)
    assert (rows[1]['target'], rows[1]['passed']) == ('', None)
    assert (rows[2]['target'], rows[2]['passed']) == ('ratio <= 1.05', False)
    assert rows[0]['extra']['cpu_ratio'] == 1.01 and rows[0]['extra']['raw_command'] == 'pg_dump -Fc -f FILE'
    table = common.format_table(rows)
    assert 'PASS' in table and 'FAIL' in table and 'info' in table
