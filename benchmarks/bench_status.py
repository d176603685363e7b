"""Status rows: (1) the example homelab through the playbook, (2) a 2,000-revision Alembic history,
(3) 50 services in one module task.

    rows = run(server, reps=3, quick=False, only=None)
"""

import contextlib
import json
import os
import shutil
import tempfile

import common
from common import BenchError, make_row

EXAMPLE = os.path.join(common.REPO, 'examples', 'homelab')
SERVICES = os.path.join(EXAMPLE, 'services')
INVENTORY = os.path.join(EXAMPLE, 'inventory', 'hosts.yml')
PLAYBOOK = os.path.join(common.REPO, 'playbooks', 'migrate.yml')
BOTS = (('stream-bot', 'stream_bot'), ('discord-bot', 'discord_bot'))

HISTORY_FULL = 2000
HISTORY_QUICK = 150
FIFTY_FULL = 50
FIFTY_QUICK = 6
FIFTY_ALEMBIC_REVS = 20
FIFTY_DRIZZLE_MIGRATIONS = 20
RAW_SAMPLE = 10


FLOOR_PLAY = """\
- name: The status task alone
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the migration status of every service and plan them
      homelab.migrations.homelab_migration_status:
        services: "{{ migrate_all_services }}"
        plan: {}
"""

# Ansible's own floor for any play that runs one module here: ansible-playbook and a ping task (no collection code)
PING_PLAY = """\
- name: One module task of ansible-core's
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


# ------------------------------------------------------------------------------ the example homelab
class Homelab:
    """The example homelab's three databases on the bench server, at a realistic part-way state.

    dashboard at 004 (005, 006 pending, by the real `alembic upgrade 004`), stream-bot with all but its
    last migration and discord-bot fully migrated (both by drizzle-orm's real migrate()).
    """

    def __init__(self, server, peer, state='partial'):
        self.server = server
        self.peer = peer
        self.dbs = dict((key, common.fresh_database(server, key)) for key in ('dashboard', 'stream_bot', 'discord_bot'))
        if state == 'partial':
            self._partial()

    def url(self, key):
        return self.server.url(self.dbs[key], password=True)

    def _partial(self):
        common.alembic_child(os.path.join(SERVICES, 'dashboard'), ['upgrade', '004'], self.url('dashboard'))
        from harness.drizzle_gen import truncate_journal
        tmp = tempfile.mkdtemp(prefix='bench-homelab-')
        try:
            folder = common.drizzle_copy(os.path.join(SERVICES, 'stream-bot', 'migrations'), tmp)
            truncate_journal(folder, len(common.journal_tags(folder)) - 1)
            common.peer_child(self.peer, 'migrate', folder, self.url('stream_bot'))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        common.peer_child(self.peer, 'migrate', os.path.join(SERVICES, 'discord-bot', 'migrations'),
                          self.url('discord_bot'))

    def extra_vars(self):
        return {'homelab_demo_pg_host': self.server.host, 'homelab_demo_pg_port': self.server.port,
                'homelab_demo_pg_user': 'homelab', 'homelab_demo_pg_password': self.server.password,
                'homelab_demo_db_dashboard': self.dbs['dashboard'],
                'homelab_demo_db_stream_bot': self.dbs['stream_bot'],
                'homelab_demo_db_discord_bot': self.dbs['discord_bot']}

    def specs(self):
        """The inventory's three service specs (as the inventory renders them) for in-code runs."""
        return [
            dict(name='dashboard', tool='alembic', path=os.path.join(SERVICES, 'dashboard'),
                 database_url=self.url('dashboard'), alembic_command=[os.path.join(common.VENV_BIN, 'alembic')]),
            dict(name='stream-bot', tool='drizzle', path=os.path.join(SERVICES, 'stream-bot'),
                 database_url=self.url('stream_bot'), depends_on=['dashboard']),
            dict(name='discord-bot', tool='drizzle', path=os.path.join(SERVICES, 'discord-bot'),
                 database_url=self.url('discord_bot'), depends_on=['dashboard', 'stream-bot']),
        ]

    def drop(self):
        for name in self.dbs.values():
            self.server.drop_database(name)


def raw_manual_status(homelab):
    """The guide's manual status: `alembic current` + `alembic heads` for the dashboard, drizzle-orm's
    status read for each bot. Returns (wall seconds, [Child], what they said)."""
    dash = os.path.join(SERVICES, 'dashboard')
    children = [common.alembic_child(dash, ['current'], homelab.url('dashboard')),
                common.alembic_child(dash, ['heads'], homelab.url('dashboard'))]
    said = {'dashboard': (children[0].stdout + children[0].stderr).strip().splitlines()[-1:]}
    for service, key in BOTS:
        child, answer = common.peer_child(homelab.peer, 'status', os.path.join(SERVICES, service, 'migrations'),
                                          homelab.url(key))
        children.append(child)
        said[service] = {'applied': len(answer['applied']), 'pending': len(answer['pending'])}
    return common.Sequence(children), said


def row1_homelab_status(server, peer, reps, tmp):
    homelab = Homelab(server, peer)
    try:
        argv = ['-i', INVENTORY, PLAYBOOK, '--check']

        def ours():
            child = common.ansible_playbook(argv, tmp, extra_vars=homelab.extra_vars())
            child.check('ansible-playbook playbooks/migrate.yml --check')
            if 'pending' not in child.stdout:
                raise BenchError('the --check run did not report the pending migrations:\n%s' % child.stdout[-3000:])
            return child

        # the floor of any play: ansible-playbook with nothing but the status task (no role)
        floor_play = os.path.join(tmp, 'status-only.yml')
        with open(floor_play, 'w') as fh:
            fh.write(FLOOR_PLAY)

        def floor():
            child = common.ansible_playbook(['-i', INVENTORY, floor_play, '--check'], tmp,
                                            extra_vars=homelab.extra_vars())
            return child.check('ansible-playbook status-only.yml --check')

        ping_play = os.path.join(tmp, 'ping.yml')
        with open(ping_play, 'w') as fh:
            fh.write(PING_PLAY)

        def ping():
            child = common.ansible_playbook(['-i', INVENTORY, ping_play], tmp, extra_vars=homelab.extra_vars())
            return child.check('ansible-playbook ping.yml')

        ours_runs, raw_runs, floor_runs, ping_runs, said = [], [], [], [], None
        for _dummy in range(reps):  # interleaved, so a noisy neighbour hits both sides alike
            ours_runs.append(ours())
            seq, said = raw_manual_status(homelab)
            raw_runs.append(seq)
            floor_runs.append(floor())
            ping_runs.append(ping())
        floor_s = common.median([c.wall for c in floor_runs])
        ping_s = common.median([c.wall for c in ping_runs])
        raw_s = common.median([s.wall for s in raw_runs])
        # one more run with the junit callback, for where the time goes (not part of the medians)
        profiled = common.ansible_playbook(argv, tmp, extra_vars=homelab.extra_vars(), junit=True)
        profiled.check('ansible-playbook playbooks/migrate.yml --check (profiled)')
        split = common.split_tasks(common.task_times(tmp), profiled.wall)
        top = sorted(split['tasks'], key=lambda t: -t[1])[:3]
        notes = ('raw = alembic current + alembic heads + drizzle-orm status x2, sequential. Profiled --check run '
                 '%.2fs: %s; Ansible outside tasks %.2fs. Floor: a play with only the status task (no role) '
                 '%.2fs = %.2f x raw; Ansible\'s floor: a play with one ansible.builtin.ping task %.2fs = %.2f x raw'
                 % (profiled.wall, ', '.join('%s %.2fs' % (common.short_task(n), t) for n, t in top),
                    split['outside_tasks'], floor_s, floor_s / raw_s if raw_s else float('nan'),
                    ping_s, ping_s / raw_s if raw_s else float('nan')))
        return make_row('1', 'status: example homelab, playbook --check', ours_runs, raw_runs, ('ratio', 1.0),
                        notes=notes, extra={'raw_said': said, 'profile': split, 'floor_s': round(floor_s, 3),
                                            'ping_floor_s': round(ping_s, 3),
                                            'raw_parts_s': [[round(c.wall, 3) for c in s.children]
                                                            for s in raw_runs]})
    finally:
        homelab.drop()


# ------------------------------------------------------------------------------ 2,000 revisions
def alembic_stamp(root, revision, url):
    common.alembic_child(root, ['stamp', revision], url)


def row2_long_history(server, reps, tmp, quick):
    count = HISTORY_QUICK if quick else HISTORY_FULL
    root = common.alembic_history(count)
    db = common.fresh_database(server, 'hist')
    url = server.url(db, password=True)
    current = 'r%05d' % (count - 10)
    try:
        alembic_stamp(root, current, url)
        spec = dict(name='history', tool='alembic', path=root, database_url=url)

        def ours():
            child, answer = common.code_child('status', {'services': [spec]}, tmp)
            entry = answer['services']['history']
            expected = (current, 'r%05d' % count, 10)
            if (entry['current_revision'], entry['latest_revision'], entry['pending']) != expected:
                raise BenchError('status of the %d-revision history is wrong: %r' % (count, entry))
            child.inner = answer['elapsed']
            return child

        def raw():
            heads = common.alembic_child(root, ['heads'], url)
            cur = common.alembic_child(root, ['current'], url)
            if 'r%05d' % count not in heads.stdout or current not in cur.stdout:
                raise BenchError('alembic heads/current said %r / %r' % (heads.stdout, cur.stdout))
            return common.Sequence([heads, cur])

        ours_runs, raw_runs = [], []
        for _dummy in range(reps):
            ours_runs.append(ours())
            raw_runs.append(raw())
        inner = common.median([c.inner for c in ours_runs])
        notes = ('%d revisions, 10 pending. ours = one interpreter running the status module_utils (build_report) '
                 'incl. start-up; in-code part %.2fs. raw = alembic heads + alembic current' % (count, inner))
        return make_row('2', 'status: %d-revision alembic history' % count, ours_runs, raw_runs, ('ratio', 0.25),
                        notes=notes, extra={'revisions': count, 'in_code_s': round(inner, 3)})
    finally:
        server.drop_database(db)


# ------------------------------------------------------------------------------ 50 services
def fifty_trees():
    """(alembic project root, drizzle service root) shared by the 50 services (cached)."""
    return common.alembic_history(FIFTY_ALEMBIC_REVS), common.drizzle_folder(FIFTY_DRIZZLE_MIGRATIONS)


@contextlib.contextmanager
def fifty_services(server, count):
    """``count`` services, half alembic and half drizzle, each on a database of its own, part-way migrated.

    alembic services are stamped at revision 15 of 20 (the real alembic stamp); drizzle services have
    their first 15 of 20 migrations applied by the collection's drizzle adapter (in-code, set-up only).
    """
    import logging

    from alembic import command
    from alembic.config import Config
    from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
    from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
    from harness.drizzle_gen import make_tag
    alembic_root, drizzle_root = fifty_trees()
    specs, dbs = [], []
    old_url = os.environ.get('DATABASE_URL')
    logging.disable(logging.INFO)  # the ini's logging config (fileConfig) would print every stamp
    devnull = open(os.devnull, 'w')
    try:
        for n in range(count):
            db = common.fresh_database(server, 'svc%02d' % n)
            dbs.append(db)
            url = server.url(db, password=True)
            if n % 2 == 0:
                spec = dict(name='svc-%02d' % n, tool='alembic', path=alembic_root, database_url=url)
                os.environ['DATABASE_URL'] = url
                command.stamp(Config(os.path.join(alembic_root, 'alembic.ini'), stdout=devnull), 'r%05d' % 15)
            else:
                spec = dict(name='svc-%02d' % n, tool='drizzle', path=drizzle_root, database_url=url)
                full = service_defaults(spec)
                result = run_apply(full, validate_service(full), {'target': make_tag(14)})
                if result.get('failed'):
                    raise BenchError('set-up of %s failed: %s' % (spec['name'], result.get('msg')))
            specs.append(spec)
        yield specs
    finally:
        devnull.close()
        logging.disable(logging.NOTSET)
        if old_url is None:
            os.environ.pop('DATABASE_URL', None)
        else:
            os.environ['DATABASE_URL'] = old_url
        for db in dbs:
            server.drop_database(db)


STATUS_PLAY = '''\
- name: status of many services in one task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: status of every service
      homelab.migrations.homelab_migration_status:
        services: "{{ bench_services }}"
      register: bench_status
    - name: check the answer
      ansible.builtin.assert:
        that:
          - bench_status.services | length == bench_count | int
          - bench_status.overall_status == 'pending'
          - bench_status.total_pending == (bench_count | int) * 5
'''


def row3_fifty(server, peer, reps, raw_reps, tmp, quick):
    count = FIFTY_QUICK if quick else FIFTY_FULL
    with fifty_services(server, count) as specs:
        play = os.path.join(tmp, 'status50.yml')
        with open(play, 'w') as fh:
            fh.write(STATUS_PLAY)
        args = ['-i', 'localhost,', '-c', 'local', play]
        extra = {'bench_services': specs, 'bench_count': count}
        ours_runs, task_s = [], []
        for _dummy in range(reps):
            child = common.ansible_playbook(args, tmp, extra_vars=extra, junit=True)
            child.check('the %d-service status play' % count)
            times = dict(common.task_times(tmp))
            task = [t for name, t in times.items() if 'status of every service' in name]
            if not task:
                raise BenchError('no junit time for the status task: %r' % times)
            task_s.append(task[0])
            child.task_s = task[0]
            ours_runs.append(child)

        # the manual commands are the same for every service of a kind: time them on a sample of each kind
        # and scale to all of them (all 50 in a row take about a minute; the sample is stated in the notes)
        sample = [s for s in specs if s['tool'] == 'alembic'][:RAW_SAMPLE // 2] + \
            [s for s in specs if s['tool'] == 'drizzle'][:RAW_SAMPLE // 2]
        scale = float(len(specs)) / len(sample)

        def raw():
            children = []
            for spec in sample:
                if spec['tool'] == 'alembic':
                    children.append(common.alembic_child(spec['path'], ['current'], spec['database_url']))
                    children.append(common.alembic_child(spec['path'], ['heads'], spec['database_url']))
                else:
                    children.append(common.peer_child(peer, 'status', os.path.join(spec['path'], 'migrations'),
                                                      spec['database_url'])[0])
            seq = common.Sequence(children)
            seq.wall *= scale
            if seq.cpu is not None:
                seq.cpu *= scale
            return seq
        raw_runs = [raw() for _dummy in range(raw_reps)]
        task_median = common.median(task_s)
        whole = common.median([c.wall for c in ours_runs])
        if len(sample) < len(specs):
            raw_text = ('raw = the manual commands (alembic current + heads, drizzle-orm status) timed on %d of the '
                        '%d services and scaled x%.0f' % (len(sample), len(specs), scale))
        else:
            raw_text = 'raw = the manual commands for all %d services in a row' % len(specs)
        notes = ('target on the task itself (junit task time, median %.2fs); the whole ansible-playbook command took '
                 '%.2fs (ours column). %s' % (task_median, whole, raw_text))
        extra = {'services': count, 'task_s': task_s, 'raw_sample': len(sample),
                 'playbook_s': [round(c.wall, 3) for c in ours_runs]}
        row = make_row('3', 'status: %d services in one module task' % count, ours_runs, raw_runs,
                       ('wall', 3.0), notes=notes, extra=extra)
        # judge the target on the task's own wall time
        row['passed'] = task_median < 3.0
        row['extra']['task_median_s'] = round(task_median, 3)
        return row


# ------------------------------------------------------------------------------ entry point
def run(server, reps=3, quick=False, only=None, log=print):
    only = set(only or ('1', '2', '3'))
    rows = []
    tmp = tempfile.mkdtemp(prefix='bench-status-')
    try:
        peer = None
        if only & {'1', '3'}:
            peer = common.drizzle_peer()
        steps = (('1', 'status: example homelab, playbook --check',
                  lambda: row1_homelab_status(server, peer, reps, tmp)),
                 ('2', 'status: long alembic history', lambda: row2_long_history(server, reps, tmp, quick)),
                 ('3', 'status: many services in one module task',
                  lambda: row3_fifty(server, peer, reps, reps, tmp, quick)))
        for key, name, step in steps:
            if key not in only:
                continue
            log('[bench] row %s: %s ...' % (key, name))
            rows.append(common.guarded(key, name, step, log=log))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == '__main__':
    with common.pg_server() as srv:
        print(json.dumps(run(srv, reps=1, quick=True), indent=2))
