"""Row 7: a full real run of the example homelab through ansible-playbook (status, backups, apply,
audit) on empty databases, and where its wall time goes; beside it the same job done by hand
(the guide's status commands, `pg_dump -Fc` of each database, `alembic upgrade head`, drizzle-orm's
migrate() for each bot).

    rows = run(server, reps=3, quick=False, only=None)
"""

import json
import os
import shutil
import tempfile

import common
from bench_status import INVENTORY, PLAYBOOK, SERVICES, Homelab, raw_manual_status
from common import BenchError, make_row

# junit task name fragments -> what the task is
MODULE_TASKS = (
    ('status', ('Read the migration status',)),  # the first one also plans the selected services
    ('audit', ('Publish the status report',)),
)
# the task that runs every service (homelab_migration_run) reports each module it ran in its result's timings
RUN_TASK = 'Back up, migrate and record the selected services'
RUN_MODULES = {'homelab_pg_backup': 'backup', 'homelab_migration_apply': 'apply', 'homelab_migration_audit': 'audit',
               'homelab_migration_health': 'health', 'homelab_migration_status': 'status'}
EXPECTED = {'dashboard': '006', 'stream-bot': 5, 'discord-bot': 3}


def classify(name):
    task = common.short_task(name)
    for kind, prefixes in MODULE_TASKS:
        if any(task.startswith(p) for p in prefixes):
            return kind
    return 'controller'


def split_run(cases, total):
    """How a full run's wall time divides between Ansible, the database and the tools."""
    in_tasks = {}
    inside = {'pg_dump (backups, verified)': 0.0, 'alembic upgrade (dashboard)': 0.0,
              'database: drizzle SQL (bots)': 0.0}
    for case in cases:
        result = case['result'] if isinstance(case['result'], dict) else {}
        if common.short_task(case['name']).startswith(RUN_TASK):
            _split_run_task(case['seconds'], result.get('timings') or [], in_tasks, inside)
            continue
        kind = classify(case['name'])
        in_tasks[kind] = in_tasks.get(kind, 0.0) + case['seconds']
    tasks_total = sum(in_tasks.values())
    work = sum(inside.values())
    module_tasks = sum(v for k, v in in_tasks.items() if k != 'controller')
    split = {
        'total_s': total,
        'ansible_startup_and_between_tasks_s': total - tasks_total,
        'ansible_controller_tasks_s': in_tasks.get('controller', 0.0),
        'module_overhead_s': module_tasks - work,
        'tools_and_database_s': work,
        'inside_modules_s': inside,
        'task_kinds_s': in_tasks,
    }
    return dict((k, _rounded(v)) for k, v in split.items())


def _split_run_task(seconds, timings, in_tasks, inside):
    """The run task's wall time by module (its timings), the rest of it on the controller."""
    used = 0.0
    for step in timings:
        kind = RUN_MODULES.get(step.get('module'), 'controller')
        in_tasks[kind] = in_tasks.get(kind, 0.0) + step['seconds']
        used += step['seconds']
        taken = step.get('backup_seconds')  # the backup an apply took first, in the same module run
        if isinstance(taken, (int, float)):
            inside['pg_dump (backups, verified)'] += taken
        inner = step.get('duration_seconds')
        if not isinstance(inner, (int, float)):
            continue
        if kind == 'backup' and step.get('state') == 'present':
            inside['pg_dump (backups, verified)'] += inner
        elif kind == 'apply':
            dashboard = step.get('service') == 'dashboard'
            inside['alembic upgrade (dashboard)' if dashboard else 'database: drizzle SQL (bots)'] += inner
    in_tasks['controller'] = in_tasks.get('controller', 0.0) + max(seconds - used, 0.0)


def _rounded(value):
    if isinstance(value, dict):
        return dict((k, _rounded(v)) for k, v in value.items())
    return round(value, 3) if isinstance(value, float) else value


def check_done(server, homelab):
    def query(key, sql):
        conn = server.connect(homelab.dbs[key])
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()
    got = {'dashboard': [r[0] for r in query('dashboard', 'SELECT version_num FROM alembic_version')],
           'stream-bot': query('stream_bot', 'SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0],
           'discord-bot': query('discord_bot', 'SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0]}
    if got != {'dashboard': [EXPECTED['dashboard']], 'stream-bot': EXPECTED['stream-bot'],
               'discord-bot': EXPECTED['discord-bot']}:
        raise BenchError('the run did not migrate the homelab to head: %r' % got)


def ours_once(server, peer, tmp):
    homelab = Homelab(server, peer, state='empty')
    work = tempfile.mkdtemp(prefix='run-', dir=tmp)
    common.checkpoint(server)
    try:
        extra = homelab.extra_vars()
        audit = os.path.join(work, 'audit.log')
        extra.update({'migrate_all_confirm': True, 'migrate_all_backup_dir': os.path.join(work, 'backups'),
                      'migrate_all_audit_log': audit})
        child = common.ansible_playbook(['-i', INVENTORY, PLAYBOOK], work, extra_vars=extra, junit=True)
        child.check('ansible-playbook playbooks/migrate.yml -e migrate_all_confirm=true')
        check_done(server, homelab)
        with open(audit) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        outcomes = set(r.get('outcome') for r in records)
        services = set(r.get('service') for r in records)
        if outcomes != {'success'} or services != set(EXPECTED):
            raise BenchError('the audit log does not show three successful services: %r' % records)
        backups = [n for n in os.listdir(os.path.join(work, 'backups')) if n.endswith('.dump')]
        if len(backups) != 3:
            raise BenchError('expected 3 backups, found %r' % backups)
        child.split = split_run(common.task_cases(work), child.wall)
        return child
    finally:
        homelab.drop()
        shutil.rmtree(work, ignore_errors=True)


def raw_once(server, peer, tmp):
    """The job by hand, as migrate-all.sh does it: status, then per service pg_dump -Fc and the tool."""
    homelab = Homelab(server, peer, state='empty')
    work = tempfile.mkdtemp(prefix='raw-', dir=tmp)
    common.checkpoint(server)
    try:
        status = raw_manual_status(homelab)[0]
        parts = {'status': status.wall, 'pg_dump': 0.0, 'alembic upgrade': 0.0, 'drizzle migrate()': 0.0}
        children = list(status.children)
        pg_dump = server.tool('pg_dump')
        for key in ('dashboard', 'stream_bot', 'discord_bot'):
            env = dict(os.environ, PGPASSWORD=server.password)
            dump = common.run_child([pg_dump, '-Fc', '-f', os.path.join(work, key + '.dump'), '-h', server.host,
                                     '-p', str(server.port), '-U', 'homelab', homelab.dbs[key]], env=env)
            dump.check('pg_dump -Fc %s' % key)
            parts['pg_dump'] += dump.wall
            children.append(dump)
            if key == 'dashboard':
                child = common.alembic_child(os.path.join(SERVICES, 'dashboard'), ['upgrade', 'head'],
                                             homelab.url('dashboard'))
                parts['alembic upgrade'] += child.wall
            else:
                service = key.replace('_', '-')
                child = common.peer_child(peer, 'migrate', os.path.join(SERVICES, service, 'migrations'),
                                          homelab.url(key))[0]
                parts['drizzle migrate()'] += child.wall
            children.append(child)
        check_done(server, homelab)
        seq = common.Sequence(children)
        seq.parts = dict((k, round(v, 3)) for k, v in parts.items())
        return seq
    finally:
        homelab.drop()
        shutil.rmtree(work, ignore_errors=True)


FULL_RUN_MAX_REPS = 3  # one repetition is about 20 s: the whole job twice


def row7_full_run(server, peer, reps, tmp):
    reps = min(reps, FULL_RUN_MAX_REPS)
    ours_runs, raw_runs = [], []
    for _dummy in range(reps):
        ours_runs.append(ours_once(server, peer, tmp))
        raw_runs.append(raw_once(server, peer, tmp))
    mid = sorted(ours_runs, key=lambda c: c.wall)[len(ours_runs) // 2]
    s = mid.split
    inside = s['inside_modules_s']
    notes = ('full run on empty databases (14 migrations, 3 backups, audit). Median run %.2fs = Ansible start-up '
             'and between tasks %.2fs + controller-side tasks %.2fs + module start-up/status/plan/audit %.2fs + '
             'tools and database %.2fs (pg_dump %.2f, alembic %.2f, drizzle SQL %.2f). raw = the same job by hand: '
             'status commands, pg_dump -Fc x3, alembic upgrade head, drizzle-orm migrate() x2'
             % (s['total_s'], s['ansible_startup_and_between_tasks_s'], s['ansible_controller_tasks_s'],
                s['module_overhead_s'], s['tools_and_database_s'], inside['pg_dump (backups, verified)'],
                inside['alembic upgrade (dashboard)'], inside['database: drizzle SQL (bots)']))
    mid_raw = sorted(raw_runs, key=lambda c: c.wall)[len(raw_runs) // 2]
    return make_row('7', 'full run: example homelab (backup+apply+audit)', ours_runs, raw_runs, None, notes=notes,
                    extra={'split': s, 'splits': [c.split for c in ours_runs], 'raw_parts_s': mid_raw.parts})


def run(server, reps=3, quick=False, only=None, log=print):
    only = set(only or ('7',))
    if '7' not in only:
        return []
    tmp = tempfile.mkdtemp(prefix='bench-run-')
    try:
        log('[bench] row 7: full run of the example homelab ...')
        return [common.guarded('7', 'full run: example homelab',
                               lambda: row7_full_run(server, common.drizzle_peer(), reps, tmp), log=log)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    with common.pg_server() as srv:
        print(json.dumps(run(srv, reps=1, quick=True), indent=2))
