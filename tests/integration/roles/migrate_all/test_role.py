"""The migrate_all role through the real `ansible-playbook playbooks/migrate.yml`, end to end.

Every test gets a fresh set of the example homelab's three databases on the session's PostgreSQL
(owned by the password role whose password is full of URL-hostile characters), a copy of the example
services in tmp_path (so a test may break a migration), and its backups, audit log, status report and
textfile metrics in tmp_path. The inventory is the example's own (examples/homelab/inventory), pointed at
the test databases with extra vars. Outcomes are checked with the services' real tools: `alembic current`
for the dashboard, drizzle-orm's own view (the drizzle peer) for the bots, and pg_dump snapshots.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import quote

import pytest

from harness.ansible import REPO, ansible_env, as_a_person, run_module, run_playbook, run_report
from harness.pg import Database

from ansible_collections.homelab.migrations.plugins.module_utils.audit import read_records

pytestmark = pytest.mark.peer

HOMELAB = os.path.join(REPO, 'examples', 'homelab')
INVENTORY = os.path.join(HOMELAB, 'inventory', 'hosts.yml')
PLAYBOOK = os.path.join(REPO, 'playbooks', 'migrate.yml')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
ORDER = ['dashboard', 'stream-bot', 'discord-bot']
DB_VARS = {'dashboard': 'homelab_demo_db_dashboard', 'stream-bot': 'homelab_demo_db_stream_bot',
           'discord-bot': 'homelab_demo_db_discord_bot'}
DASHBOARD_REVS = ['001', '002', '003', '004', '005', '006']
BOTS = {
    'stream-bot': ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
                   '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements'],
    'discord-bot': ['0000_initial_schema', '0001_add_ticket_categories', '0002_add_stream_notifications'],
}
BROKEN = '0005_broken_backfill'

CAPTURE_CALLBACK = '''
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Keeps the last value of the migrate_all_audit fact per host and writes it out at the end."""
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'capture_migrate_all'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.facts = {}

    def v2_runner_on_ok(self, result):
        facts = result._result.get('ansible_facts') or {}
        if 'migrate_all_audit' in facts:
            self.facts[result._host.get_name()] = facts['migrate_all_audit']

    def v2_playbook_on_stats(self, stats):
        with open(os.environ['MIGRATE_ALL_FACT_FILE'], 'w') as fh:
            json.dump(self.facts, fh, default=str)
'''


class Homelab:
    """The example homelab on fresh databases, with its files in tmp_path."""

    def __init__(self, pg, tmp_path):
        self.pg = pg
        self.tmp = tmp_path
        self.services_dir = str(tmp_path / 'services')
        shutil.copytree(os.path.join(HOMELAB, 'services'), self.services_dir,
                        ignore=shutil.ignore_patterns('node_modules', '__pycache__', '.venv'))
        self.dbs = dict((name, Database(pg, pg.create_database())) for name in ORDER)
        self.backup_dir = str(tmp_path / 'backups')
        self.audit_log = str(tmp_path / 'log' / 'audit.log')
        self.status_report = str(tmp_path / 'www' / 'migrations.json')
        self.textfile = str(tmp_path / 'prom' / 'homelab_migrations.prom')
        self.fact_file = str(tmp_path / 'facts.json')
        self.callback_dir = str(tmp_path / 'callbacks')
        os.makedirs(self.callback_dir)
        with open(os.path.join(self.callback_dir, 'capture_migrate_all.py'), 'w') as fh:
            fh.write(CAPTURE_CALLBACK)

    @property
    def canary(self):
        """The unique part of the password: found in any encoding of it (raw, percent-encoded, in a URL)."""
        return re.sub(r'[^0-9a-f]', '', self.pg.password.lower())[-12:]

    def drop(self):
        for db in self.dbs.values():
            self.pg.drop_database(db.name)

    # ------------------------------------------------------------------------ running
    def extra_vars(self, confirm=True, **more):
        ev = {
            'homelab_demo_pg_host': self.pg.host,
            'homelab_demo_pg_port': self.pg.port,
            'homelab_demo_pg_user': 'homelab',
            'homelab_demo_pg_password': self.pg.password,
            'homelab_demo_services_dir': self.services_dir,
            'migrate_all_backup_dir': self.backup_dir,
            'migrate_all_audit_log': self.audit_log,
            'migrate_all_status_report': self.status_report,
            'migrate_all_prometheus_textfile': self.textfile,
        }
        for name, var in DB_VARS.items():
            ev[var] = self.dbs[name].name
        if confirm:
            ev['migrate_all_confirm'] = True
        ev.update(more)
        return ev

    def env(self):
        return {'ANSIBLE_CALLBACK_PLUGINS': self.callback_dir, 'ANSIBLE_CALLBACKS_ENABLED': 'capture_migrate_all',
                'MIGRATE_ALL_FACT_FILE': self.fact_file}

    def play(self, check=False, tags=None, confirm=True, diff=False, timeout=600, verbosity=0, **more):
        if os.path.exists(self.fact_file):
            os.unlink(self.fact_file)
        started = time.monotonic()
        proc = run_playbook(PLAYBOOK, inventory=INVENTORY, extra_vars=self.extra_vars(confirm, **more), check=check,
                            diff=diff, tags=tags, env=self.env(), timeout=timeout, verbosity=verbosity)
        proc.elapsed = time.monotonic() - started
        proc.output = proc.stdout + proc.stderr
        assert self.canary not in proc.output, 'the database password reached the output'
        return proc

    def spec(self, name, **more):
        tool = 'alembic' if name == 'dashboard' else 'drizzle'
        spec = {'name': name, 'tool': tool, 'path': os.path.join(self.services_dir, name),
                'database_url': self.dbs[name].password_url}
        spec.update(more)
        return spec

    def move(self, name, target):
        """Put a service at a revision with the apply module (test set-up)."""
        result, proc = run_module('homelab_migration_apply', {'service': self.spec(name), 'target': target})
        assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]

    # ---------------------------------------------------------------------- observing
    def snapshot(self, names=tuple(ORDER)):
        return dict((name, self.dbs[name].snapshot()) for name in names)

    def audit(self):
        return read_records(self.audit_log)

    def role_records(self):
        return [r for r in self.audit() if r.get('source') == 'role']

    def fact(self):
        with open(self.fact_file) as fh:
            return json.load(fh).get('localhost', [])

    def backups(self, service=None):
        if not os.path.isdir(self.backup_dir):
            return []
        names = sorted(f for f in os.listdir(self.backup_dir) if not f.endswith('.sha256') and not f.startswith('.'))
        if service is not None:
            names = [f for f in names if f.startswith(service + '_')]
        return names

    def alembic_current(self):
        env = dict(os.environ, DATABASE_URL=self.dbs['dashboard'].url)
        out = subprocess.run([ALEMBIC, 'current'], cwd=os.path.join(self.services_dir, 'dashboard'), env=env,
                             check=False, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        return re.findall(r'^(\w+)(?: \(head\))?\s*$', out.stdout, re.M)

    def drizzle(self, peer, name):
        """drizzle-orm's own view of a bot: {'applied': n, 'pending': [...]}."""
        folder = os.path.join(self.services_dir, name, 'migrations')
        status = peer.status(folder, self.dbs[name].url)
        return status

    def drizzle_applied(self, name):
        """The journal tags of the rows in drizzle's tracking table, in insertion order."""
        db = self.dbs[name]
        if db.query("SELECT to_regclass('drizzle.__drizzle_migrations')")[0][0] is None:
            return []
        rows = db.query('SELECT hash, created_at FROM drizzle."__drizzle_migrations" ORDER BY id')
        folder = os.path.join(self.services_dir, name, 'migrations')
        with open(os.path.join(folder, 'meta', '_journal.json')) as fh:
            by_when = dict((e['when'], e['tag']) for e in json.load(fh)['entries'])
        return [by_when.get(int(r[1]), '?') for r in rows]

    def break_stream_bot(self, without_down=None):
        """Add a migration to stream-bot that fails half-way (after a CREATE TABLE and an INSERT)."""
        folder = os.path.join(self.services_dir, 'stream-bot', 'migrations')
        journal_path = os.path.join(folder, 'meta', '_journal.json')
        with open(journal_path) as fh:
            journal = json.load(fh)
        last = journal['entries'][-1]
        journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=BROKEN))
        with open(journal_path, 'w') as fh:
            json.dump(journal, fh, indent=2)
        with open(os.path.join(folder, BROKEN + '.sql'), 'w') as fh:
            fh.write('CREATE TABLE "backfill_probe" ("id" serial PRIMARY KEY, "note" text);\n'
                     '--> statement-breakpoint\n'
                     'INSERT INTO "backfill_probe" ("note") VALUES (\'half-way\');\n'
                     '--> statement-breakpoint\n'
                     'UPDATE "users" SET "display_name" = "no_such_column";\n')
        with open(os.path.join(folder, BROKEN + '.down.sql'), 'w') as fh:
            fh.write('DROP TABLE "backfill_probe";\n')
        if without_down:
            os.unlink(os.path.join(folder, without_down + '.down.sql'))

    def seed_stream_bot(self):
        """Rows in the tables stream-bot has at 0002."""
        db = self.dbs['stream-bot']
        db.execute("INSERT INTO users (id, email, display_name) VALUES ('u1', 'ana@example.org', 'Ana'), "
                   "('u2', 'bo@example.org', NULL)")
        db.execute("INSERT INTO bot_settings (user_id, command_prefix) VALUES ('u1', '?')")
        db.execute("INSERT INTO platform_connections (id, user_id, platform, platform_user_id, platform_username) "
                   "VALUES ('c1', 'u1', 'twitch', '111', 'ana_tv'), ('c2', 'u2', 'youtube', '222', 'bo')")


@pytest.fixture
def homelab(pg, tmp_path):
    lab = Homelab(pg, tmp_path)
    yield lab
    lab.drop()


def outcomes(records):
    return dict((r['service'], r['outcome']) for r in records)


def refused(lab, records, action='apply'):
    """The one audit record of a refused run among ``records`` (the new ones), checked for its shape."""
    assert [r.get('outcome') for r in records] == ['refused'], records
    record = records[0]
    assert record['source'] == 'role' and record['action'] == action and record['service'] is None, record
    assert record['changed'] is False and record['recovery'] == 'nothing was changed', record
    assert record['run_id'] and record['applied'] == [] and record['backup'] is None, record
    line = json.dumps(record)
    assert lab.canary not in line, 'a password in the record'
    assert not [db.name for db in lab.dbs.values() if db.name in line], 'a database URL in the record'
    return record


def assert_at_head(lab, peer):
    assert lab.alembic_current() == ['006']
    for bot, tags in BOTS.items():
        status = lab.drizzle(peer, bot)
        assert status['pending'] == [], (bot, status)
        assert lab.drizzle_applied(bot) == tags


# --------------------------------------------------------------------------------------------- tests
def test_check_mode_lists_every_pending_migration_and_writes_nothing(homelab):
    before = homelab.snapshot()
    proc = homelab.play(check=True, confirm=False)
    assert proc.returncode == 0, proc.output[-5000:]
    table = proc.stdout[proc.stdout.index('Show the migration status'):]
    for rev in DASHBOARD_REVS:
        assert re.search(r'pending\s+%s\b' % rev, table), rev
    for tags in BOTS.values():
        for tag in tags:
            assert 'pending  %s' % tag in table
    assert re.search(r'changed=[1-9]', proc.stdout), 'check mode must report changed when something is pending'
    assert homelab.snapshot() == before
    assert homelab.backups() == []
    assert not os.path.exists(homelab.audit_log)
    # the dashboard API JSON and the metrics are written in check mode too
    with open(homelab.status_report) as fh:
        report = json.load(fh)
    assert report['overall_status'] == 'pending' and report['total_pending'] == 14
    assert report['services']['dashboard']['pending_migrations'] == DASHBOARD_REVS
    assert report['services']['stream-bot']['pending'] == 5
    assert oct(os.stat(homelab.status_report).st_mode & 0o777) == '0o644'
    with open(homelab.textfile) as fh:
        prom = fh.read()
    assert 'homelab_migration_pending{service="discord-bot",tool="drizzle"} 3' in prom
    assert 'last_run' not in prom


def test_run_migrates_all_in_dependency_order_then_changes_nothing(homelab, drizzle_peer):
    proc = homelab.play()
    assert proc.returncode == 0, proc.output[-6000:]
    assert_at_head(homelab, drizzle_peer)
    # one backup per service, taken before its migrations
    assert [b.split('_')[0] for b in homelab.backups()] == sorted(ORDER)
    records = homelab.audit()
    applies = [r for r in records if r.get('source') != 'role']
    assert [r['service'] for r in applies] == ORDER, 'applied in depends_on order'
    assert all(r['outcome'] == 'success' and r['confirmation'] == 'migrate_all_confirm' for r in applies)
    role = homelab.role_records()
    assert [r['service'] for r in role] == ORDER
    assert outcomes(role) == dict.fromkeys(ORDER, 'success')
    assert role[0]['applied'] == DASHBOARD_REVS and role[1]['applied'] == BOTS['stream-bot']
    assert all(r['backup'] and os.path.exists(r['backup']) for r in role)
    assert homelab.fact() == role
    summary = proc.stdout[proc.stdout.index('TASK [homelab.migrations.migrate_all : Summary]'):]
    assert 'dashboard: (none) -> 006, applied 6, backup %s/dashboard_' % homelab.backup_dir in summary
    with open(homelab.status_report) as fh:
        report = json.load(fh)
    assert report['overall_status'] == 'up_to_date' and report['total_pending'] == 0
    with open(homelab.textfile) as fh:
        prom = fh.read()
    assert 'homelab_migration_last_run_success{action="apply"} 1' in prom
    assert 'homelab_migration_pending{service="stream-bot",tool="drizzle"} 0' in prom
    for path in (homelab.audit_log, homelab.status_report, homelab.textfile):
        with open(path) as fh:
            assert homelab.canary not in fh.read()

    snap = homelab.snapshot()
    again = homelab.play()
    assert again.returncode == 0, again.output[-6000:]
    assert re.search(r'localhost\s+: ok=\d+\s+changed=0\s', again.stdout), again.stdout[-3000:]
    assert len(homelab.backups()) == 3, 'a second run takes no new backup'
    assert homelab.snapshot() == snap
    assert outcomes(homelab.fact()) == dict.fromkeys(ORDER, 'unchanged')

    # check mode afterwards: nothing pending, nothing changed
    check = homelab.play(check=True, confirm=False)
    assert check.returncode == 0
    assert re.search(r'localhost\s+: ok=\d+\s+changed=0\s', check.stdout)


def test_broken_migration_rolls_stream_bot_back_and_skips_its_dependent(homelab, drizzle_peer):
    homelab.move('stream-bot', '0002_add_currency_system')
    homelab.seed_stream_bot()
    homelab.break_stream_bot()
    before = homelab.snapshot()
    # each migration commits on its own, so the role really has to take 0003 and 0004 back down
    proc = homelab.play(migrate_all_transaction='each')
    assert proc.returncode != 0
    fatal = run_report(proc.stdout)
    assert BROKEN in fatal and 'stream-bot failed' in fatal
    # dashboard migrated
    assert homelab.alembic_current() == ['006']
    # stream-bot back at its pre-run revision, schema and data as before
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot'][:3]
    assert drizzle_peer.status(os.path.join(homelab.services_dir, 'stream-bot', 'migrations'),
                               homelab.dbs['stream-bot'].url)['pending'] == BOTS['stream-bot'][3:] + [BROKEN]
    assert homelab.snapshot(['stream-bot']) == dict((k, before[k]) for k in ['stream-bot'])
    # discord-bot not attempted
    assert homelab.snapshot(['discord-bot']) == dict((k, before[k]) for k in ['discord-bot'])
    assert homelab.backups('discord-bot') == []
    role = homelab.role_records()
    assert outcomes(role) == {'dashboard': 'success', 'stream-bot': 'failed', 'discord-bot': 'skipped'}
    by = dict((r['service'], r) for r in role)
    assert BROKEN in by['stream-bot']['error']
    assert by['stream-bot']['from'] == by['stream-bot']['to'] == '0002_add_currency_system'
    assert by['stream-bot']['recovery'].startswith('rolled back to 0002_add_currency_system')
    assert 'stream-bot' in by['discord-bot']['reason']
    assert homelab.fact() == role


def test_when_going_back_fails_the_backup_is_restored(homelab):
    homelab.move('stream-bot', '0002_add_currency_system')
    homelab.seed_stream_bot()
    homelab.break_stream_bot(without_down='0003_add_platform_user_unique_constraint')
    before = homelab.snapshot(['stream-bot'])
    proc = homelab.play(migrate_all_transaction='each', tags='stream-bot')
    assert proc.returncode != 0
    assert homelab.snapshot(['stream-bot']) == before
    rec = homelab.role_records()[-1]
    assert rec['service'] == 'stream-bot' and rec['outcome'] == 'failed'
    assert 'restored the backup' in rec['recovery'] and rec['backup'] in rec['recovery']
    assert rec['to'] == '0002_add_currency_system'


def test_a_lock_held_by_another_run_fails_the_service_without_undoing_anything(homelab):
    from ansible_collections.homelab.migrations.plugins.module_utils import lock
    homelab.move('stream-bot', '0002_add_currency_system')
    homelab.seed_stream_bot()
    before = homelab.snapshot(['stream-bot'])
    other_run = homelab.dbs['stream-bot'].conn()
    try:
        lock.acquire(other_run, 'stream-bot', wait_seconds=0)
        proc = homelab.play(tags='stream-bot', migrate_all_lock_wait=2)
        assert homelab.snapshot(['stream-bot']) == before
    finally:
        other_run.close()
    assert proc.returncode != 0
    assert 'is locked by' in proc.stdout
    records = homelab.audit()
    # one failed apply; no going back, no restore of the backup under the other run's feet
    assert [(r['action'], r['outcome']) for r in records if r.get('source') != 'role'] == [('apply', 'failed')]
    role = homelab.role_records()[-1]
    assert role['outcome'] == 'failed' and role['recovery'] == 'nothing was changed', role['recovery']
    assert 'is locked by' in role['error'] and 'migration 0003' not in role['error']
    assert role['to'] == '0002_add_currency_system'


def test_rollback_scope_run_takes_the_dashboard_back_too(homelab):
    homelab.move('dashboard', '003')
    homelab.break_stream_bot()
    before = homelab.snapshot()
    proc = homelab.play(migrate_all_rollback_scope='run')
    assert proc.returncode != 0
    assert BROKEN in run_report(proc.stdout)
    assert homelab.alembic_current() == ['003']
    assert homelab.snapshot() == before
    role = homelab.role_records()
    final = outcomes(role)
    assert final == {'dashboard': 'rolled_back', 'stream-bot': 'failed', 'discord-bot': 'skipped'}
    undo = [r for r in role if r.get('scope') == 'run']
    assert [r['service'] for r in undo] == ['dashboard']
    assert undo[0]['reverted'] == ['006', '005', '004']
    assert outcomes(homelab.fact()) == final


def test_tags_limit_the_run_to_one_service(homelab, drizzle_peer):
    before = homelab.snapshot()
    # -vvv prints every task's result and arguments: the password must not be among them (checked in play())
    proc = homelab.play(tags='stream-bot', verbosity=3)
    assert proc.returncode == 0, proc.output[-5000:]
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in proc.stdout
    assert drizzle_peer.status(os.path.join(homelab.services_dir, 'stream-bot', 'migrations'),
                               homelab.dbs['stream-bot'].url)['pending'] == []
    assert homelab.snapshot(['dashboard', 'discord-bot']) == dict((k, before[k]) for k in ['dashboard', 'discord-bot'])
    assert [b.split('_')[0] for b in homelab.backups()] == ['stream-bot']
    assert [r['service'] for r in homelab.audit()] == ['stream-bot', 'stream-bot']


def test_rollback_by_tag_moves_only_that_service_one_step_back(homelab, drizzle_peer):
    assert homelab.play().returncode == 0
    before = homelab.snapshot()
    backups = homelab.backups()
    proc = homelab.play(tags='stream-bot', migrate_all_action='rollback')
    assert proc.returncode == 0, proc.output[-5000:]
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot'][:4]
    assert drizzle_peer.status(os.path.join(homelab.services_dir, 'stream-bot', 'migrations'),
                               homelab.dbs['stream-bot'].url)['pending'] == BOTS['stream-bot'][4:]
    assert homelab.snapshot(['dashboard', 'discord-bot']) == dict((k, before[k]) for k in ['dashboard', 'discord-bot'])
    new = sorted(set(homelab.backups()) - set(backups))
    assert len(new) == 1 and new[0].startswith('stream-bot_'), 'a backup first, of that service only'
    rec = homelab.role_records()[-1]
    assert rec['service'] == 'stream-bot' and rec['action'] == 'rollback' and rec['outcome'] == 'success'
    assert rec['reverted'] == [BOTS['stream-bot'][4]]
    # to a named target
    proc = homelab.play(tags='stream-bot', migrate_all_action='rollback',
                        migrate_all_rollback_target='0001_add_giveaways')
    assert proc.returncode == 0, proc.output[-5000:]
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot'][:2]


def test_rollback_without_a_tag_is_refused(homelab):
    assert homelab.play(tags='dashboard').returncode == 0
    before = homelab.snapshot()
    records = homelab.audit()
    proc = homelab.play(migrate_all_action='rollback')
    assert proc.returncode != 0
    assert '--tags' in proc.stdout and 'Nothing was changed' in proc.stdout
    assert homelab.snapshot() == before
    # the refused attempt is audited: why, the services it knew, nothing changed
    record = refused(homelab, homelab.audit()[len(records):], action='rollback')
    assert '--tags' in record['error'] and 'Nothing was changed' in record['error']
    assert record['services'] == ORDER and record['selected'] == ORDER
    assert record['reason'] == 'refused by the task: Refuse a rollback that does not name its service(s)'
    assert homelab.fact()[-1:] == [record], 'the refusal is in the migrate_all_audit fact too'


def test_check_mode_refuses_like_a_run_and_writes_no_audit_record(homelab):
    """--check writes nothing, not even the record of a refusal; it still fails with the same message."""
    proc = homelab.play(check=True, confirm=False, migrate_all_action='rollback')
    assert proc.returncode != 0
    assert '--tags' in proc.stdout and 'Nothing was changed' in proc.stdout
    services = [homelab.spec('dashboard', depends_on=['stream-bot']), homelab.spec('stream-bot',
                                                                                   depends_on=['dashboard'])]
    proc = homelab.play(check=True, confirm=False, migrate_all_services=services)
    assert proc.returncode != 0 and 'cycle' in proc.stdout, proc.output[-3000:]
    proc = homelab.play(check=True, confirm=False, migrate_all_lock_wait='soon')
    assert proc.returncode != 0 and 'migrate_all_lock_wait' in proc.stdout, proc.output[-3000:]
    assert not os.path.exists(homelab.audit_log)
    assert homelab.backups() == []


def test_a_refusal_that_cannot_be_recorded_still_fails_with_its_reason(homelab, tmp_path):
    """The audit log may be the bad input: the play fails with the refusal and why it was not recorded."""
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('a file where the audit log directory should be')
    before = homelab.snapshot()
    proc = homelab.play(confirm=False, migrate_all_audit_log=str(blocker / 'audit.log'))
    assert proc.returncode != 0
    fatal = proc.stdout[proc.stdout.index('TASK [homelab.migrations.migrate_all : Fail with the reason'):]
    assert 'not confirmed' in fatal and '-e migrate_all_confirm=true' in fatal, fatal[-3000:]
    assert 'the refusal could not be recorded' in fatal and 'could not write the audit log' in fatal, fatal[-3000:]
    assert homelab.snapshot() == before
    assert homelab.backups() == []


def test_no_tty_and_no_confirmation_stops_at_once_touching_nothing(homelab, drizzle_peer):
    before = homelab.snapshot()
    proc = homelab.play(confirm=False, timeout=120)
    assert proc.returncode != 0
    assert proc.elapsed < 60, 'must not wait for input (took %.1fs)' % proc.elapsed
    assert '-e migrate_all_confirm=true' in proc.stdout
    assert 'Nothing was touched' in proc.stdout
    assert homelab.snapshot() == before
    assert homelab.backups() == []
    # one audit record of the attempt: refused, not confirmed, what it would have worked on
    record = refused(homelab, homelab.audit())
    assert 'not confirmed' in record['error'] and '-e migrate_all_confirm=true' in record['error']
    assert record['confirmation'] == 'none'
    assert record['services'] == ORDER and record['selected'] == ORDER and record['pending'] == ORDER
    # the same run confirmed completes
    proc = homelab.play(confirm=True)
    assert proc.returncode == 0, proc.output[-5000:]
    assert_at_head(homelab, drizzle_peer)


def test_dependency_cycle_is_an_error_before_anything_runs(homelab):
    services = [homelab.spec('dashboard', depends_on=['discord-bot']), homelab.spec('stream-bot'),
                homelab.spec('discord-bot', depends_on=['stream-bot', 'dashboard'])]
    before = homelab.snapshot()
    proc = homelab.play(migrate_all_services=services)
    assert proc.returncode != 0
    assert 'cycle' in proc.stdout and 'dashboard -> discord-bot -> dashboard' in proc.stdout
    assert 'Read the migration status' not in proc.stdout
    assert homelab.snapshot() == before
    record = refused(homelab, homelab.audit())
    assert 'dashboard -> discord-bot -> dashboard' in record['error'] and record['services'] is None
    services[0]['depends_on'] = ['grafana']
    proc = homelab.play(migrate_all_services=services)
    assert proc.returncode != 0 and "'grafana', which is not in the service list" in proc.stdout
    assert "'grafana', which is not in the service list" in refused(homelab, homelab.audit()[1:])['error']


class _Unhealthy(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b'down for maintenance')

    def log_message(self, *args):
        pass


def test_failed_health_check_rolls_the_service_back(homelab):
    server = HTTPServer(('127.0.0.1', 0), _Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = 'http://127.0.0.1:%d/health' % server.server_port
        services = [homelab.spec('stream-bot'), homelab.spec('discord-bot', health_check=url)]
        homelab.move('discord-bot', '0000_initial_schema')
        before = homelab.snapshot(['discord-bot'])
        proc = homelab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                            migrate_all_health_check_delay=0)
    finally:
        server.shutdown()
    assert proc.returncode != 0
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot']
    assert homelab.snapshot(['discord-bot']) == before
    rec = [r for r in homelab.role_records() if r['service'] == 'discord-bot'][0]
    assert rec['outcome'] == 'failed' and 'HTTP 503' in rec['error']
    assert rec['reverted'] == BOTS['discord-bot'][:0:-1]


def _run_on_a_terminal(argv, env, answer, timeout=300):
    """Run argv with stdin and stdout on a pseudo-terminal; type ``answer`` at the prompt.

    The prompt switches the terminal mode after printing (which may drop what was typed too early,
    as with a human typing ahead), so the answer is typed again while nothing happens after it.
    """
    import pty
    import select
    env = as_a_person(env)
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.chdir(REPO)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, sent, typed_at = b'', 0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _w, _x = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            prompt_at = out.rfind(b'Type "yes"')
            waiting = prompt_at >= 0 and b'TASK [' not in out[prompt_at:] and b'PLAY RECAP' not in out[prompt_at:]
            if waiting and sent < 10 and time.monotonic() - typed_at > 2:
                time.sleep(0.3)
                os.write(fd, answer + b'\r')
                sent += 1
                typed_at = time.monotonic()
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
        _pid, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode('utf-8', 'replace'), sent > 0


@pytest.mark.parametrize('answer', [b'yes', b'no'])
def test_interactive_terminal_asks_and_records_the_answer(homelab, tmp_path, answer):
    varsfile = str(tmp_path / 'vars.json')
    fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump(homelab.extra_vars(confirm=False), fh)
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), PLAYBOOK, '-i', INVENTORY,
            '-e', '@' + varsfile, '--tags', 'discord-bot']
    before = homelab.snapshot()
    rc, out, asked = _run_on_a_terminal(argv, ansible_env(homelab.env()), answer)
    assert asked, out[-4000:]
    assert 'discord-bot: (none) -> 0002_add_stream_notifications' in out
    if answer == b'yes':
        assert rc == 0, out[-4000:]
        assert homelab.drizzle_applied('discord-bot') == BOTS['discord-bot']
        assert [r['confirmation'] for r in homelab.audit()] == ['prompt', 'prompt']
    else:
        assert rc != 0
        assert 'the answer was not yes' in out
        assert homelab.snapshot() == before
        record = refused(homelab, homelab.audit())
        assert record['confirmation'] == 'none' and 'the answer was not yes' in record['error']
        assert record['selected'] == ['discord-bot']


def test_inventory_urls_work_with_the_canary_password(homelab):
    """The example inventory builds the URLs; the password role's URL-hostile password survives it."""
    assert quote(homelab.pg.password, safe='') != homelab.pg.password
    proc = homelab.play(check=True, confirm=False)
    assert proc.returncode == 0, proc.output[-4000:]
    with open(homelab.status_report) as fh:
        text = fh.read()
    assert homelab.pg.password not in text and '"unreachable"' not in text


def test_one_prompt_shows_every_hosts_plan(homelab, tmp_path, drizzle_peer):
    """Two hosts in one play: the first has nothing pending, the second has; the one question shows the
    second host's plan (pause runs once, for the first host) and its answer counts for both."""
    homelab.move('discord-bot', '0002_add_stream_notifications')
    inventory = str(tmp_path / 'two-hosts.yml')
    with open(inventory, 'w') as fh:
        # the playbook runs on the group `migrations` (migrate_all_hosts)
        json.dump({'migrations': {'hosts': {
            'quiet-host': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
                           'migrate_all_services': [homelab.spec('discord-bot')]},
            'busy-host': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
                          'migrate_all_services': [homelab.spec('stream-bot')]},
        }}}, fh)
    os.chmod(inventory, 0o600)
    varsfile = str(tmp_path / 'vars.json')
    fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, 'w') as fh:
        json.dump(dict((k, v) for k, v in homelab.extra_vars(confirm=False).items()
                       if not k.startswith('homelab_demo_')), fh)
    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), PLAYBOOK, '-i', inventory,
            '-e', '@' + varsfile]
    rc, out, asked = _run_on_a_terminal(argv, ansible_env(homelab.env()), b'yes')
    assert asked, out[-4000:]
    prompt = out[out.index('Ask before changing any database'):out.rindex('Type "yes"')]
    assert 'busy-host:' in prompt and 'stream-bot: (none) -> 0004_add_giveaway_concurrency_improvements' in prompt
    assert 'quiet-host' not in prompt, 'a host with nothing pending is not in the question'
    assert rc == 0, out[-4000:]
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot']
    records = [r for r in homelab.audit() if r.get('service') == 'stream-bot']
    assert records and all(r['confirmation'] == 'prompt' for r in records), records


def test_preflight_error_refuses_the_run_and_the_override_fails_as_predicted(homelab):
    """A stream-bot migration PostgreSQL refuses in a transaction: --check shows the finding under the service,
    the run is refused before anything is touched, and with migrate_all_allow_findings it fails as predicted."""
    folder = os.path.join(homelab.services_dir, 'stream-bot', 'migrations')
    journal_path = os.path.join(folder, 'meta', '_journal.json')
    with open(journal_path) as fh:
        journal = json.load(fh)
    last = journal['entries'][-1]
    tag = '0005_users_email_idx'
    journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=tag))
    with open(journal_path, 'w') as fh:
        json.dump(journal, fh, indent=2)
    with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
        fh.write('CREATE INDEX CONCURRENTLY "users_email_lower_idx" ON "users" (lower("email"));\n')
    before = homelab.snapshot()

    proc = homelab.play(check=True, confirm=False)
    assert proc.returncode != 0 and 'cannot be planned' in proc.stdout
    assert '[not_in_transaction] %s' % tag in proc.stdout, proc.output[-3000:]
    with open(homelab.status_report) as fh:
        entry = json.load(fh)['services']['stream-bot']
    assert [(f['code'], f['severity']) for f in entry['findings'] if f['source'] != 'squawk'] == [
        ('not_in_transaction', 'error')]
    with open(homelab.textfile) as fh:
        assert 'homelab_migration_findings{service="stream-bot",severity="error"} 1' in fh.read()

    proc = homelab.play()
    assert proc.returncode != 0 and 'not_in_transaction' in proc.stdout
    assert homelab.snapshot() == before and homelab.backups() == []
    assert refused(homelab, homelab.audit())['action'] == 'apply'

    records = homelab.audit()
    proc = homelab.play(tags='stream-bot', migrate_all_allow_findings=['not_in_transaction'])
    assert proc.returncode != 0
    new = [r for r in homelab.audit()[len(records):] if r.get('source') == 'role']
    assert outcomes(new) == {'stream-bot': 'failed'}, new
    assert 'cannot run inside a transaction block' in json.dumps(new)
    assert homelab.snapshot(['stream-bot']) == {'stream-bot': before['stream-bot']}


# ------------------------------------------------------------------------------- issue 11: what really stayed
def _add_stream_bot_migration(lab, tag, sql):
    folder = os.path.join(lab.services_dir, 'stream-bot', 'migrations')
    journal_path = os.path.join(folder, 'meta', '_journal.json')
    with open(journal_path) as fh:
        journal = json.load(fh)
    last = journal['entries'][-1]
    journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=tag))
    with open(journal_path, 'w') as fh:
        json.dump(journal, fh, indent=2)
    with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
        fh.write(sql)
    with open(os.path.join(folder, tag + '.down.sql'), 'w') as fh:
        fh.write('SELECT 1;\n')


def test_a_migration_that_commits_itself_makes_the_role_restore_the_backup(homelab):
    """COMMIT inside a drizzle migration, then a failing statement: not "nothing to revert"; the backup."""
    homelab.move('stream-bot', BOTS['stream-bot'][-1])
    homelab.seed_stream_bot()
    _add_stream_bot_migration(homelab, '0005_commits_itself',
                              'CREATE TABLE "half_done" ("id" int);\n--> statement-breakpoint\nCOMMIT;\n'
                              '--> statement-breakpoint\nSELECT no_such_function();\n')
    before = homelab.snapshot(['stream-bot'])
    # the pre-flight check refuses it before anything is touched
    refused = homelab.play(tags='stream-bot')
    assert refused.returncode != 0 and 'ends_transaction' in refused.stdout
    assert homelab.snapshot(['stream-bot']) == before
    # allowed anyway: the apply stops right after the COMMIT, and the role restores the backup
    proc = homelab.play(tags='stream-bot', migrate_all_allow_findings=['ends_transaction'])
    assert proc.returncode != 0
    # the table created before the COMMIT is gone again: the backup was restored
    assert homelab.snapshot(['stream-bot']) == before
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot']
    applies = [r for r in homelab.audit() if r.get('source') != 'role' and r['action'] == 'apply']
    assert applies[-1]['untouched'] is False and applies[-1]['error_code'] == 'transaction_ended'
    rec = homelab.role_records()[-1]
    assert rec['outcome'] == 'failed' and rec['restored'] is True, rec
    assert rec['recovery'].startswith('restored the backup') and 'half_done' in rec['recovery']
    assert rec['failed_migration'] == '0005_commits_itself' and rec['committed'] == []
    # a second run fails the same way, not with "already exists"
    again = homelab.play(tags='stream-bot', migrate_all_allow_findings=['ends_transaction'])
    assert again.returncode != 0 and 'already exists' not in again.stdout


def test_a_run_that_waited_for_another_runs_lock_never_reverts_its_work(homelab):
    """Run B holds the lock and applies 0003; run A (planned from 0002) gets the lock afterwards: refused."""
    from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
    from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
    homelab.move('stream-bot', '0002_add_currency_system')
    homelab.seed_stream_bot()
    homelab.break_stream_bot()
    slow = os.path.join(homelab.services_dir, 'stream-bot', 'migrations', BOTS['stream-bot'][3] + '.sql')
    with open(slow, 'a') as fh:
        fh.write('\n--> statement-breakpoint\nSELECT pg_sleep(6);\n')
    spec = service_defaults(homelab.spec('stream-bot'))
    result = {}
    run_b = threading.Thread(target=lambda: result.update(run_apply(
        spec, validate_service(spec), {'target': BOTS['stream-bot'][3]})))
    run_b.start()
    db = homelab.dbs['stream-bot']
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not db.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")[0][0]:
        time.sleep(0.05)
    proc = homelab.play(tags='stream-bot', migrate_all_transaction='each', migrate_all_lock_wait=60)
    run_b.join()
    assert 'failed' not in result, result.get('msg')
    assert proc.returncode != 0
    # B's committed migration stays: A never went back past where B left the service
    assert homelab.drizzle_applied('stream-bot') == BOTS['stream-bot'][:4]
    rec = homelab.role_records()[-1]
    assert rec['outcome'] == 'failed' and rec['to'] == BOTS['stream-bot'][3], rec
    if rec.get('error_code') == 'conflict':
        # A planned from 0002 before B committed: refused under its lock, naming both revisions
        assert rec['reverted'] == [] and BOTS['stream-bot'][3] in rec['error'] \
            and '0002_add_currency_system' in rec['error'] and 'expect_from' in rec['error']
    else:
        # A planned after B committed: it went back only to B's revision (its own from_revision)
        assert BOTS['stream-bot'][3] not in rec['reverted'], rec


class _Switchable(BaseHTTPRequestHandler):
    healthy = False

    def do_GET(self):  # noqa: N802
        self.send_response(200 if _Switchable.healthy else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_run_cancelled_during_the_health_check_leaves_the_service_unverified(homelab):
    """SIGTERM while a failing health check retries: the next run checks health although nothing is pending."""
    import signal
    from harness.ansible import VENV_BIN
    _Switchable.healthy = False
    server = HTTPServer(('127.0.0.1', 0), _Switchable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/health' % server.server_port
        services = [homelab.spec('discord-bot', health_check=url)]
        varsfile = str(homelab.tmp / 'vars.json')
        with open(varsfile, 'w') as fh:
            json.dump(homelab.extra_vars(migrate_all_services=services, migrate_all_health_check_retries=100,
                                         migrate_all_health_check_delay=1), fh)
        env = ansible_env(homelab.env())
        play = subprocess.Popen([os.path.join(VENV_BIN, 'ansible-playbook'), PLAYBOOK, '-i', INVENTORY, '-e',
                                 '@' + varsfile], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not [r for r in homelab.audit() if r.get('health') == 'unverified']:
            time.sleep(0.5)
        time.sleep(2)  # the check is retrying now
        os.killpg(play.pid, signal.SIGTERM)
        play.wait(timeout=120)
        # the breaking migrations stayed (nobody took them back), and the service is unverified
        assert homelab.drizzle_applied('discord-bot') == BOTS['discord-bot']
        status = homelab.play(check=True, migrate_all_services=services)
        assert 'health   unverified since' in status.stdout
        # nothing is pending, yet the next run checks health again and fails while it does not pass
        again = homelab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                             migrate_all_health_check_delay=0)
        assert again.returncode != 0 and 'did not answer 2xx' in again.stdout
        assert [r['health'] for r in homelab.audit() if r.get('action') == 'health_check'][-1] == 'unverified'
        # once it passes, the service is verified and a run is quiet again
        _Switchable.healthy = True
        ok = homelab.play(migrate_all_services=services)
        assert ok.returncode == 0, ok.stdout[-3000:]
        assert [r['health'] for r in homelab.audit() if r.get('action') == 'health_check'][-1] == 'passed'
        assert 'health   unverified' not in homelab.play(check=True, migrate_all_services=services).stdout
    finally:
        server.shutdown()
