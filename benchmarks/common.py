"""Shared pieces of the benchmarks: paths, timed child processes, rows, the table, machine facts.

Every measured command runs as a child process timed from fork to exit, with its peak memory taken
from ``os.wait4``'s rusage (``ru_maxrss`` of the largest process of the child's tree that was waited
for: for ansible-playbook that is the controller or one of its forked workers, whichever was largest),
through a small launcher process so that our own size does not leak into the children's figures.

``python benchmarks/common.py <kind> <payload.json>`` is the "ours" side of the in-code rows: it runs
the collection's module_utils code path (status report, apply) in a fresh interpreter, so its time
includes start-up and imports exactly as the raw tool's does. The payload file (mode 0600) carries
the database URL; nothing secret is ever put on a command line.
"""

import contextlib
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TESTS = os.path.join(REPO, 'tests')
RESULTS = os.path.join(HERE, 'results')
CACHE = os.path.join(REPO, '.cache', 'bench')
PYTHON = sys.executable
VENV_BIN = os.path.dirname(PYTHON)
CHILD = os.path.join(HERE, 'child.py')  # the "ours" side of rows 2, 4, 5 and 6 (a lean interpreter)

if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from harness.ansible import COLLECTIONS, ansible_env, ensure_collection_link  # noqa: E402

ensure_collection_link()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to (a command failed, a result is wrong)."""


# ------------------------------------------------------------------------------ timed children
class Child:
    """What one child process did: wall seconds, peak RSS in MB, exit code, its output and CPU seconds
    (user + system of the command's process tree; a database server's work is not in it)."""

    def __init__(self, argv, wall, peak_mb, rc, stdout, stderr, cpu=None):
        self.argv = argv
        self.cpu = cpu
        self.wall = wall
        self.peak_mb = peak_mb
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def check(self, what=None):
        if self.rc != 0:
            raise BenchError('%s exited %s\nstdout (tail):\n%s\nstderr (tail):\n%s'
                             % (what or ' '.join(self.argv[:3]), self.rc, self.stdout[-3000:], self.stderr[-3000:]))
        return self


class Sequence(object):
    """Several children run one after the other, as a person types them: wall is the sum, peak the largest."""

    def __init__(self, children):
        self.children = list(children)
        self.wall = sum(c.wall for c in self.children)
        self.peak_mb = max([c.peak_mb for c in self.children] or [0.0])
        cpus = [c.cpu for c in self.children]
        self.cpu = sum(cpus) if cpus and None not in cpus else None


# A small launcher between us and the measured command. The peak RSS of a process includes the memory
# of the process it was forked from (the kernel carries the old address space's high-water mark over
# exec), so measured straight from this large interpreter every child would show at least our own
# size. The launcher is ~10 MB: it forks and execs the command, times it and takes its rusage from
# wait4, and writes both to a file.
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as fh:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime, "rc": code}, fh)
sys.exit(code if 0 <= code < 256 else 1)
"""


def run_child(argv, env=None, cwd=None, timeout=900):
    """Run ``argv`` to completion; its wall time and peak RSS come from the launcher. Never raises on rc != 0."""
    with tempfile.TemporaryDirectory(prefix='bench-child-') as tmp:
        report = os.path.join(tmp, 'rusage.json')
        out_path, err_path = os.path.join(tmp, 'stdout'), os.path.join(tmp, 'stderr')
        with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
            proc = subprocess.Popen([PYTHON, '-S', '-c', LAUNCHER, report] + list(argv), env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        with open(out_path, 'rb') as fh:
            stdout = fh.read().decode('utf-8', 'replace')
        with open(err_path, 'rb') as fh:
            stderr = fh.read().decode('utf-8', 'replace')
        try:
            with open(report) as fh:
                facts = json.load(fh)
        except (OSError, ValueError):
            facts = {'wall': None, 'maxrss_kb': 0, 'rc': proc.returncode if proc.returncode else -9}
            stderr += '\n[bench] the command was killed after %ss or could not start' % timeout
    return Child(argv, facts['wall'], facts['maxrss_kb'] / 1024.0, facts['rc'], stdout, stderr, facts.get('cpu'))


def write_private(path, data):
    """JSON to a new 0600 file (payloads carry database URLs with passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump(data, fh)
    return path


def code_child(kind, payload, tmpdir):
    """Run ``kind`` (see child.py's KINDS) in a fresh interpreter; returns (Child, its JSON answer)."""
    path = write_private(os.path.join(tmpdir, 'payload-%s.json' % kind), payload)
    child = run_child([PYTHON, CHILD, kind, path], cwd=tmpdir)
    child.check('benchmarks/child.py %s' % kind)
    try:
        answer = json.loads(child.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError('benchmarks/child.py %s gave no JSON: %r %r'
                         % (kind, child.stdout[-2000:], child.stderr[-2000:]))
    return child, answer


def ansible_playbook(args, tmpdir, extra_vars=None, env=None, cwd=None, junit=False, timeout=900):
    """ansible-playbook ``args`` as a timed child; extra vars through a 0600 file.

    With ``junit`` the ansible-core junit callback records every task's duration (see task_times).
    """
    argv = [os.path.join(VENV_BIN, 'ansible-playbook')] + list(args)
    if extra_vars:
        argv += ['-e', '@' + write_private(os.path.join(tmpdir, 'extra-vars.json'), extra_vars)]
    extra_env = dict(env or {})
    if junit:
        jdir = os.path.join(tmpdir, 'junit')
        shutil.rmtree(jdir, ignore_errors=True)
        os.makedirs(jdir)
        extra_env.update({'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.junit', 'JUNIT_OUTPUT_DIR': jdir,
                          'JUNIT_HIDE_TASK_ARGUMENTS': 'true', 'JUNIT_INCLUDE_SETUP_TASKS_IN_REPORT': 'false'})
    return run_child(argv, env=ansible_env(extra_env), cwd=cwd or REPO, timeout=timeout)


def task_cases(tmpdir):
    """[{name, seconds, result}] from the junit callback's XML of the last ansible_playbook(junit=True).

    ``result`` is the task's result dict when the callback recorded one (ok tasks), else None.
    """
    import xml.etree.ElementTree as ET
    jdir = os.path.join(tmpdir, 'junit')
    out = []
    for name in sorted(os.listdir(jdir)):
        if not name.endswith('.xml'):
            continue
        root = ET.parse(os.path.join(jdir, name)).getroot()
        for case in root.iter('testcase'):
            result = None
            sysout = case.find('system-out')
            if sysout is not None and sysout.text:
                try:
                    result = json.loads(sysout.text)
                except ValueError:
                    result = None
            out.append({'name': case.get('name') or '', 'seconds': float(case.get('time') or 0.0),
                        'result': result})
    return out


def task_times(tmpdir):
    """[(task name, seconds)] of the last ansible_playbook(junit=True)."""
    return [(c['name'], c['seconds']) for c in task_cases(tmpdir)]


def split_tasks(times, total):
    """Where a playbook's wall time went: per task (junit), in tasks, and outside them (start-up, loading)."""
    in_tasks = sum(seconds for name, seconds in times)
    return {'total_s': round(total, 3), 'in_tasks_s': round(in_tasks, 3), 'outside_tasks': round(total - in_tasks, 3),
            'tasks': [(name, round(t, 3)) for name, t in times]}


def short_task(name):
    """The task's own name from a junit test case name ('[host] play: role : task')."""
    return name.rsplit(' : ', 1)[-1].split(': ', 1)[-1] if ' : ' in name else name.split(': ', 1)[-1]


# ------------------------------------------------------------------------------ generated trees (cached)
def _generator_stamp():
    import hashlib
    digest = hashlib.sha256()
    for rel in ('tests/harness/alembic_gen.py', 'tests/harness/drizzle_gen.py'):
        try:
            with open(os.path.join(REPO, rel), 'rb') as fh:
                digest.update(fh.read())
        except OSError:
            digest.update(rel.encode())
    try:
        import alembic
        digest.update(alembic.__version__.encode())
    except ImportError:
        pass
    return digest.hexdigest()


def cached_tree(name, build):
    """``.cache/bench/<name>``, made by ``build(path)`` unless a complete copy from the same generators exists."""
    path = os.path.join(CACHE, name)
    marker = os.path.join(path, '.bench-complete')
    stamp = _generator_stamp()
    try:
        with open(marker) as fh:
            if fh.read().strip() == stamp:
                return path
    except OSError:
        pass
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix=name + '.', dir=CACHE)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # alembic's "Generating ..." lines
            build(os.path.join(work, 'tree'))
        with open(os.path.join(work, 'tree', '.bench-complete'), 'w') as fh:
            fh.write(stamp + '\n')
        shutil.rmtree(path, ignore_errors=True)
        os.rename(os.path.join(work, 'tree'), path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def alembic_history(count):
    """A cached alembic project with ``count`` linear revisions r00001.. (tests/harness/alembic_gen.py: the real
    `alembic init` and alembic's own revision generation; each revision creates a table of its own)."""
    from harness.alembic_gen import AlembicProject

    def build(root):
        AlembicProject.init(root).bulk_linear(count, prefix='r', width=5)
    return cached_tree('alembic-linear-%d' % count, build)


def drizzle_folder(count):
    """A cached drizzle service root whose ``migrations`` folder holds ``count`` drizzle-kit style migrations
    (tests/harness/drizzle_gen.py: 5 statements each, with down files)."""
    from harness.drizzle_gen import generate

    def build(root):
        generate(os.path.join(root, 'migrations'), count)
    return cached_tree('drizzle-%d' % count, build)


def drizzle_copy(folder, dest_parent):
    """A copy of a drizzle migrations folder under ``dest_parent``; returns the copy's path."""
    dest = os.path.join(dest_parent, os.path.basename(os.path.normpath(folder)))
    shutil.copytree(folder, dest)
    return dest


def journal_tags(folder):
    with open(os.path.join(folder, 'meta', '_journal.json')) as fh:
        return [e['tag'] for e in json.load(fh)['entries']]


def guarded(row, name, fn, log=None):
    """``fn()`` (a row or a list of rows); a failure becomes an error row instead of ending the bench."""
    import traceback
    say = log or (lambda text: sys.stderr.write(text + '\n'))
    started = time.time()
    try:
        return fn()
    except Exception as exc:
        say(traceback.format_exc())
        return error_row(row, name, exc)
    finally:
        if log is not None:
            log('[bench] row %s: %.0fs' % (row, time.time() - started))


# ------------------------------------------------------------------------------ statistics and rows
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def repeat(fn, reps):
    """Call ``fn()`` (returning a Child or (Child, ...)) ``reps`` times; returns the list of Childs."""
    runs = []
    for _dummy in range(reps):
        result = fn()
        runs.append(result[0] if isinstance(result, tuple) else result)
    return runs


def make_row(row, name, ours=None, raw=None, target=None, ours_s=None, raw_s=None, peak_mb=None, raw_peak_mb=None,
             notes='', extra=None):
    """One result row.

    ``ours`` / ``raw`` are lists of Child runs (or of seconds); medians are taken here. ``target`` is
    ('ratio', x) for ours/raw <= x, ('overhead', s) for ours - raw <= s, ('wall', s) for ours < s, or None.
    """
    def seconds(runs):
        return [r.wall if hasattr(r, 'wall') else r for r in (runs or [])]

    def peak(runs):
        vals = [r.peak_mb for r in (runs or []) if getattr(r, 'peak_mb', None) is not None]
        return max(vals) if vals else None

    ours_runs, raw_runs = seconds(ours), seconds(raw)
    if ours_s is None:
        ours_s = median(ours_runs)
    if raw_s is None:
        raw_s = median(raw_runs)
    if peak_mb is None:
        peak_mb = peak(ours)
    if raw_peak_mb is None:
        raw_peak_mb = peak(raw)
    ratio = (ours_s / raw_s) if (ours_s is not None and raw_s) else None
    extra = dict(extra or {})
    for side, runs in (('ours', ours), ('raw', raw)):
        cpus = [getattr(r, 'cpu', None) for r in (runs or [])]
        if cpus and None not in cpus:
            extra.setdefault('%s_cpu_s' % side, _round(median(cpus)))
    passed = None
    target_text = ''
    if target:
        kind, value = target
        if kind == 'ratio':
            target_text = 'ratio <= %s' % value
            passed = ratio is not None and ratio <= value
        elif kind == 'overhead':
            target_text = '+%ss max' % value
            passed = ours_s is not None and raw_s is not None and ours_s - raw_s <= value
        elif kind == 'wall':
            target_text = '< %ss' % value
            passed = ours_s is not None and ours_s < value
        else:
            raise ValueError('unknown target kind %r' % kind)
    return {
        'row': str(row),
        'name': name,
        'ours_s': _round(ours_s),
        'raw_s': _round(raw_s),
        'ratio': _round(ratio),
        'overhead_s': _round(ours_s - raw_s) if (ours_s is not None and raw_s is not None) else None,
        'target': target_text,
        'passed': passed,
        'peak_mb': _round(peak_mb, 1),
        'raw_peak_mb': _round(raw_peak_mb, 1),
        'reps': max(len(ours_runs), len(raw_runs)),
        'ours_runs': [_round(v) for v in ours_runs],
        'raw_runs': [_round(v) for v in raw_runs],
        'notes': notes,
        'extra': extra,
    }


def _round(value, digits=3):
    return None if value is None else round(float(value), digits)


def error_row(row, name, exc):
    """A row for a benchmark that could not run: it fails, and says why."""
    text = ' '.join(str(exc).split())
    return {'row': str(row), 'name': name, 'ours_s': None, 'raw_s': None, 'ratio': None, 'overhead_s': None,
            'target': '', 'passed': False, 'peak_mb': None, 'raw_peak_mb': None, 'reps': 0, 'ours_runs': [],
            'raw_runs': [], 'notes': 'ERROR: %s: %s' % (type(exc).__name__, text[:600]), 'extra': {}}


ROW_KEYS = ('row', 'name', 'ours_s', 'raw_s', 'ratio', 'overhead_s', 'target', 'passed', 'peak_mb', 'raw_peak_mb',
            'reps', 'ours_runs', 'raw_runs', 'notes', 'extra')
_ALIASES = {
    'ours_s': ('ours_median_s', 'ours_median', 'ours'),
    'raw_s': ('raw_median_s', 'raw_median', 'raw'),
    'ours_runs': ('ours_s',),
    'raw_runs': ('raw_s',),
    'peak_mb': ('ours_peak_mb', 'peak_rss_mb'),
    'raw_peak_mb': ('raw_peak_rss_mb',),
    'name': ('label', 'title'),
    'notes': ('note',),
    'passed': ('ok', 'pass'),
}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize_row(row, default_row):
    """A row from another benchmark module (bench_backup's dicts) in this module's shape.

    Medians may come as ``ours_median_s``/``raw_median_s``, runs as lists under ``ours_s``/``raw_s``, the
    target as a number (a ratio limit) or text; other keys are kept under ``extra``.
    """
    def pick(key, want):
        for name in (key,) + _ALIASES.get(key, ()):
            if name in row and want(row[name]):
                return row[name], name
        return None, None

    used = set()
    out = {'row': str(row.get('row') or default_row)}
    used.add('row')
    for key, want in (('ours_s', _number), ('raw_s', _number), ('ratio', _number), ('overhead_s', _number),
                      ('peak_mb', _number), ('raw_peak_mb', _number), ('reps', _number),
                      ('ours_runs', lambda v: isinstance(v, list)), ('raw_runs', lambda v: isinstance(v, list)),
                      ('name', lambda v: isinstance(v, str)), ('notes', lambda v: isinstance(v, str))):
        value, name = pick(key, want)
        out[key] = value
        used.add(name)
    for key in ('ours_s', 'raw_s', 'ratio', 'overhead_s'):
        out[key] = _round(out[key])
    for key in ('peak_mb', 'raw_peak_mb'):
        out[key] = _round(out[key], 1)
    out['name'] = out['name'] or 'backup'
    out['notes'] = out['notes'] or ''
    out['reps'] = int(out['reps'] or 0)
    out['ours_runs'] = [_round(v) for v in out['ours_runs'] or [] if _number(v)]
    out['raw_runs'] = [_round(v) for v in out['raw_runs'] or [] if _number(v)]
    if out['ratio'] is None and out['ours_s'] is not None and out['raw_s']:
        out['ratio'] = _round(out['ours_s'] / out['raw_s'])
    if out['overhead_s'] is None and out['ours_s'] is not None and out['raw_s'] is not None:
        out['overhead_s'] = _round(out['ours_s'] - out['raw_s'])
    target = row.get('target')
    used.add('target')
    if _number(target):
        out['target'] = 'ratio <= %s' % target
        out['passed'] = out['ratio'] is not None and out['ratio'] <= target
    else:
        out['target'] = str(target or '')
        passed, name = pick('passed', lambda v: isinstance(v, bool))
        used.add(name)
        out['passed'] = passed if out['target'] else None
    extra = dict(row.get('extra') or {})
    used.add('extra')
    for key, value in row.items():
        if key not in used:
            extra[key] = value
    out['extra'] = extra
    return dict((key, out.get(key)) for key in ROW_KEYS)


# ------------------------------------------------------------------------------ table
COLUMNS = (('row', 4), ('benchmark', 58), ('ours s', 9), ('raw s', 9), ('ratio', 7), ('target', 14),
           ('result', 6), ('peak MB', 13))


def _fmt(value, digits=3):
    if value is None:
        return '-'
    if isinstance(value, float):
        return '%.*f' % (digits, value)
    return str(value)


def format_table(rows):
    """The fixed-width table: row, ours (median s), raw (median s), ratio, target, pass/fail, peak MB."""
    head = ' '.join(title.ljust(width) if i < 2 else title.rjust(width) for i, (title, width) in enumerate(COLUMNS))
    lines = [head, '-' * len(head)]
    for r in rows:
        result = {True: 'PASS', False: 'FAIL', None: 'info'}[r.get('passed')]
        peak = _fmt(r.get('peak_mb'), 0)
        if r.get('raw_peak_mb') is not None:
            peak = '%s/%s' % (peak, _fmt(r.get('raw_peak_mb'), 0))
        name = r.get('name') or ''
        cells = [str(r.get('row')), name[:58], _fmt(r.get('ours_s')), _fmt(r.get('raw_s')),
                 _fmt(r.get('ratio'), 3), r.get('target') or '-', result, peak]
        widths = [width for title, width in COLUMNS]
        lines.append(' '.join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    lines.append('ours/raw s: medians of wall time; ratio = ours / raw; peak MB: ours/raw, the largest process of each '
                 'command (wait4 rusage); CPU s: user+system of the commands (not the database server)')
    for r in rows:
        extra = r.get('extra') or {}
        cpu = ''
        if extra.get('ours_cpu_s') is not None and extra.get('raw_cpu_s') is not None:
            cpu = '(CPU s ours/raw %.2f/%.2f) ' % (extra['ours_cpu_s'], extra['raw_cpu_s'])
        if cpu or r.get('notes'):
            lines.append('  [%s] %s%s' % (r.get('row'), cpu, r.get('notes') or ''))
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ machine facts
def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def cpu_model():
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(pg=None):
    info = {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'hostname': platform.node(),
        'nproc': os.cpu_count(),
        'cpu_model': cpu_model(),
        'mem_total_mb': None,
        'load_avg_at_start': list(os.getloadavg()),
        'os': platform.platform(),
        'python': platform.python_version(),
        'ansible_core': _first_line([os.path.join(VENV_BIN, 'ansible'), '--version']),
        'node': _first_line(['node', '--version']),
    }
    try:
        with open('/proc/meminfo') as fh:
            info['mem_total_mb'] = int(fh.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import alembic
        import psycopg2
        import sqlalchemy
        info['alembic'] = alembic.__version__
        info['sqlalchemy'] = sqlalchemy.__version__
        info['psycopg2'] = psycopg2.__version__.split()[0]
    except ImportError:
        pass
    try:
        from harness.drizzle_peer import DrizzlePeer
        info['drizzle'] = DrizzlePeer().versions()
    except Exception:  # the peer is not installed: rows that need it say so themselves
        pass
    if pg is not None:
        info['postgresql_client'] = _first_line([pg.tool('pg_dump'), '--version'])
        try:
            conn = pg.connect()
            with conn.cursor() as cur:
                cur.execute('SHOW server_version')
                info['postgresql_server'] = cur.fetchone()[0]
            conn.close()
        except Exception:
            pass
    return info


# ------------------------------------------------------------------------------ the database server
@contextlib.contextmanager
def pg_server():
    """A throwaway PostgreSQL cluster (tests/harness/pg.py), always destroyed afterwards."""
    from harness.pg import PgServer
    server = PgServer(dsn=os.environ.get('HOMELAB_TEST_PG_DSN'))
    try:
        server.start()
        server.setup_roles()
        yield server
    finally:
        server.destroy()


def fresh_database(server, prefix='bench'):
    """A new empty database owned by the password role; returns its name."""
    import uuid
    return server.create_database('%s_%s' % (prefix, uuid.uuid4().hex[:10]))


def checkpoint(server):
    """CHECKPOINT before a measured write run, so each side starts with the server's WAL in the same state
    (creating databases and thousands of DDL statements otherwise leave the next run a checkpoint to pay)."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute('CHECKPOINT')
    finally:
        conn.close()


def drizzle_peer():
    """The drizzle-orm peer (installed with npm ci when needed); BenchError without Node."""
    from harness.drizzle_peer import DrizzlePeer
    peer = DrizzlePeer(timeout=900)
    if not peer.available:
        raise BenchError('the drizzle-orm rows need node and npm on PATH (apt-get install nodejs npm)')
    peer.ensure_installed()
    return peer


def peer_argv(peer, command, folder):
    from harness.drizzle_peer import PEER_JS
    return [peer.node, PEER_JS, command, '--folder', os.path.abspath(folder)]


def peer_child(peer, command, folder, url):
    """drizzle-orm's migrate()/status through Node as a timed child (URL in DATABASE_URL only)."""
    from harness.drizzle_peer import PEER_DIR
    child = run_child(peer_argv(peer, command, folder), env=dict(os.environ, DATABASE_URL=url), cwd=PEER_DIR)
    child.check('drizzle peer %s %s' % (command, folder))
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    if not answer.get('ok'):
        raise BenchError('drizzle peer %s failed: %s' % (command, answer.get('error')))
    return child, answer


def alembic_child(service_dir, args, url):
    """The real `alembic <args>` in ``service_dir`` as a timed child (URL in DATABASE_URL only)."""
    env = dict(os.environ, DATABASE_URL=url, PATH=VENV_BIN + os.pathsep + os.environ.get('PATH', ''))
    env.pop('ALEMBIC_CONFIG', None)
    child = run_child([os.path.join(VENV_BIN, 'alembic')] + list(args), env=env, cwd=service_dir)
    return child.check('alembic %s in %s' % (' '.join(args), service_dir))
