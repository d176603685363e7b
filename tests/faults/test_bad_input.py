"""Bad input sweep, through `ansible-playbook playbooks/migrate.yml` as a user runs it (confirmed, not check mode).

Every service-spec key with a wrong type or value, unknown keys, malicious names, broken migration files
(non-UTF-8 SQL, a 0-byte journal, a journal pointing outside its folder, ...) and a few role variables:
each must be a clear error (the message names the problem: the key, the value or the file) before anything
changes: no backup taken, no migration run, every database exactly as before (schema and rows, and a
canary table `x` that an injected `DROP TABLE x` would remove), and exactly one audit record of the attempt
(outcome refused, the same error, no password, no database URL).

One homelab serves the whole sweep (module scope): dashboard at 002 and stream-bot at 0002 with rows,
discord-bot empty. File cases work on their own copy of the services (homelab_demo_services_dir).
"""

import json
import os
import re
import shutil

import pytest

from harness.faults import FaultLab

pytestmark = pytest.mark.peer

DROP = "'; DROP TABLE x; --"
DELETE = object()


def _prepare(lab):
    lab.reset()
    lab.move('dashboard', '002')
    lab.move('stream-bot', '0002_add_currency_system')
    lab.seed_stream_bot()
    for db in lab.dbs.values():
        db.execute('CREATE TABLE x (id int PRIMARY KEY); INSERT INTO x VALUES (1)')
    return lab.snapshot()


@pytest.fixture(scope='module')
def sweep_lab(pg, tmp_path_factory):
    lab = FaultLab(pg, tmp_path_factory.mktemp('sweep'))
    lab.initial = _prepare(lab)
    yield lab
    lab.drop()


def _services(lab):
    return [lab.spec('dashboard'), lab.spec('stream-bot', depends_on=['dashboard']),
            lab.spec('discord-bot', depends_on=['dashboard', 'stream-bot'])]


def url_without_scheme(lab, case_dir):
    services = _services(lab)
    url = services[1]['database_url']
    services[1]['database_url'] = url.split('://', 1)[1]
    return {'migrate_all_services': services}


def url_unencoded(lab, case_dir):
    """Issue 13 input 1: the canary password typed as is, not percent-encoded (it holds @:/%?)."""
    services = _services(lab)
    url = services[1]['database_url']
    scheme, rest = url.split('://', 1)
    services[1]['database_url'] = '%s://homelab:%s@%s' % (scheme, lab.pg.password, rest.rsplit('@', 1)[1])
    return {'migrate_all_services': services}


def spec_case(service, key, value):
    def mutate(lab, case_dir):
        services = _services(lab)
        spec = [s for s in services if s['name'] == service][0]
        if value is DELETE:
            del spec[key]
        else:
            spec[key] = value
        return {'migrate_all_services': services}
    return mutate


def services_case(fn):
    def mutate(lab, case_dir):
        return {'migrate_all_services': fn(_services(lab))}
    return mutate


def var_case(**role_vars):
    def mutate(lab, case_dir):
        return role_vars
    return mutate


def file_case(fn):
    """Break files in a copy of the services; the example inventory builds the specs from that copy."""
    def mutate(lab, case_dir):
        fn(case_dir)
        return {'homelab_demo_services_dir': case_dir}
    return mutate


def _journal(case_dir, bot, change):
    path = os.path.join(case_dir, bot, 'migrations', 'meta', '_journal.json')
    with open(path) as fh:
        journal = json.load(fh)
    change(journal)
    with open(path, 'w') as fh:
        json.dump(journal, fh)


def _write(path, data):
    with open(path, 'wb') as fh:
        fh.write(data)


def _latin1_sql(d):
    path = os.path.join(d, 'stream-bot', 'migrations', '0003_add_platform_user_unique_constraint.sql')
    with open(path, 'rb') as fh:
        data = fh.read()
    _write(path, b'-- caf\xe9 cr\xe8me (latin-1, not UTF-8)\n' + data)


def _latin1_applied(d):
    path = os.path.join(d, 'stream-bot', 'migrations', '0001_add_giveaways.sql')
    with open(path, 'rb') as fh:
        data = fh.read()
    _write(path, data + b'\n-- r\xe9sum\xe9\n')


def _outside(tag):
    def change(journal):
        journal['entries'].append(dict(journal['entries'][-1], idx=99, tag=tag,
                                       when=journal['entries'][-1]['when'] + 1000))
    return change


def _alembic_file(name, data):
    def fn(d):
        _write(os.path.join(d, 'dashboard', 'alembic', 'versions', name), data)
    return fn


CASES = [
    # ---- name
    ('name-missing', spec_case('stream-bot', 'name', DELETE), ['name']),
    ('name-empty', spec_case('stream-bot', 'name', ''), ['name', "''"]),
    ('name-uppercase', spec_case('stream-bot', 'name', 'Stream-Bot'), ['Stream-Bot', 'not valid']),
    ('name-too-long', spec_case('stream-bot', 'name', 'a' * 64), ['a' * 64, 'not valid']),
    ('name-sql-injection', spec_case('stream-bot', 'name', DROP), ['DROP TABLE x', 'not valid']),
    ('name-path-traversal', spec_case('stream-bot', 'name', '../../etc'), ['../../etc', 'not valid']),
    ('name-list', spec_case('stream-bot', 'name', ['stream-bot']), ['name']),
    ('name-duplicate', services_case(lambda s: s[:2] + [dict(s[2], name='stream-bot')]),
     ['stream-bot', 'twice']),
    # ---- tool
    ('tool-missing', spec_case('stream-bot', 'tool', DELETE), ['tool']),
    ('tool-unknown', spec_case('stream-bot', 'tool', 'flyway'), ['tool', 'flyway']),
    ('tool-number', spec_case('stream-bot', 'tool', 7), ['tool', '7']),
    # ---- path
    ('path-missing', spec_case('stream-bot', 'path', DELETE), ['path']),
    ('path-empty', spec_case('stream-bot', 'path', ''), ['path']),
    ('path-nonexistent', spec_case('stream-bot', 'path', '/nonexistent/stream-bot'), ['/nonexistent/stream-bot']),
    ('path-dict', spec_case('stream-bot', 'path', {'dir': '/srv'}), ['path']),
    # ---- database_url
    ('url-missing', spec_case('stream-bot', 'database_url', DELETE), ['database_url']),
    ('url-garbage', spec_case('stream-bot', 'database_url', 'not a url'), ['database_url']),
    ('url-mysql', spec_case('stream-bot', 'database_url', 'mysql://root@127.0.0.1/stream'), ['mysql']),
    ('url-number', spec_case('stream-bot', 'database_url', 5432), ['database_url']),
    # a URL typed without "postgresql://": it holds the password and must not be shown anywhere
    ('url-no-scheme', url_without_scheme, ['database_url', 'is not a URL']),
    ('url-unencoded-password', url_unencoded, ['database_url', 'percent-encode']),
    # ---- depends_on
    ('depends-unknown', spec_case('stream-bot', 'depends_on', ['grafana']), ['grafana']),
    ('depends-self', spec_case('stream-bot', 'depends_on', ['stream-bot']), ['stream-bot', 'itself']),
    ('depends-dict', spec_case('stream-bot', 'depends_on', {'dashboard': True}), ['depends_on']),
    ('depends-malicious', spec_case('stream-bot', 'depends_on', [DROP]), ['DROP TABLE x']),
    # ---- alembic_config / alembic_command / version_table(_schema)
    ('alembic-config-traversal', spec_case('dashboard', 'alembic_config', '../../etc/passwd'),
     ['alembic_config', '../../etc/passwd']),
    ('alembic-config-absolute', spec_case('dashboard', 'alembic_config', '/etc/passwd'),
     ['alembic_config', '/etc/passwd']),
    ('alembic-config-missing', spec_case('dashboard', 'alembic_config', 'production.ini'), ['production.ini']),
    ('alembic-command-empty', spec_case('dashboard', 'alembic_command', []), ['alembic_command']),
    ('alembic-command-string-list', spec_case('dashboard', 'alembic_command', [['alembic']]), ['alembic_command']),
    ('alembic-command-missing-binary', spec_case('dashboard', 'alembic_command', ['/nonexistent/bin/alembic']),
     ['/nonexistent/bin/alembic']),
    ('version-table-empty', spec_case('dashboard', 'version_table', ''), ['version_table']),
    ('version-table-too-long', spec_case('dashboard', 'version_table', 'v' * 64), ['version_table']),
    ('version-table-not-the-one-env-py-uses', spec_case('dashboard', 'version_table', 'alembic_versions'),
     ['alembic_versions']),
    # ---- migrations_dir / migrations_table / migrations_schema
    ('migrations-dir-traversal', spec_case('stream-bot', 'migrations_dir', '../../etc'),
     ['migrations_dir', '../../etc']),
    ('migrations-dir-absolute', spec_case('stream-bot', 'migrations_dir', '/etc'), ['migrations_dir', '/etc']),
    ('migrations-dir-missing', spec_case('stream-bot', 'migrations_dir', 'drizzle'), ['drizzle']),
    ('migrations-table-empty', spec_case('stream-bot', 'migrations_table', ''), ['migrations_table']),
    ('migrations-table-too-long', spec_case('stream-bot', 'migrations_table', 't' * 64), ['migrations_table']),
    ('migrations-schema-list', spec_case('stream-bot', 'migrations_schema', ['drizzle']), ['migrations_schema']),
    # ---- backup / target / health_check
    ('backup-unknown', spec_case('stream-bot', 'backup', 'sometimes'), ['backup', 'sometimes']),
    ('backup-bool', spec_case('stream-bot', 'backup', True), ['backup']),
    ('target-empty', spec_case('stream-bot', 'target', ''), ['target']),
    ('target-unknown', spec_case('stream-bot', 'target', '0009_from_the_future'), ['0009_from_the_future']),
    ('target-list', spec_case('stream-bot', 'target', ['head']), ['target']),
    ('health-check-ftp', spec_case('stream-bot', 'health_check', 'ftp://127.0.0.1/health'), ['health_check']),
    ('health-check-not-url', spec_case('stream-bot', 'health_check', 'localhost:8080'), ['health_check']),
    # ---- unknown keys
    ('unknown-key', spec_case('stream-bot', 'colour', 'red'), ['colour']),
    ('unknown-key-typo', spec_case('stream-bot', 'depends-on', ['dashboard']), ['depends-on']),
    ('unknown-key-malicious', spec_case('stream-bot', DROP, 1), ['DROP TABLE x']),
    # ---- the list itself and role variables
    ('services-not-a-list', var_case(migrate_all_services='stream-bot'), ['migrate_all_services']),
    ('services-item-string', services_case(lambda s: s + ['grafana']), ['migrate_all_services']),
    ('action-unknown', var_case(migrate_all_action='destroy'), ['migrate_all_action', 'destroy']),
    ('transaction-unknown', var_case(migrate_all_transaction='some'), ['migrate_all_transaction', 'some']),
    ('lock-wait-word', var_case(migrate_all_lock_wait='soon'), ['migrate_all_lock_wait']),
    ('scope-unknown', var_case(migrate_all_rollback_scope='world'), ['migrate_all_rollback_scope', 'world']),
    # ---- files
    ('sql-not-utf8-pending', file_case(_latin1_sql),
     ['0003_add_platform_user_unique_constraint.sql', 'UTF-8']),
    ('sql-not-utf8-applied', file_case(_latin1_applied), ['0001_add_giveaways']),
    ('journal-0-bytes', file_case(lambda d: _write(os.path.join(d, 'stream-bot', 'migrations', 'meta',
                                                                '_journal.json'), b'')), ['_journal.json', 'empty']),
    ('journal-not-json', file_case(lambda d: _write(os.path.join(d, 'stream-bot', 'migrations', 'meta',
                                                                 '_journal.json'), b'{"entries": [')),
     ['_journal.json', 'JSON']),
    ('journal-not-utf8', file_case(lambda d: _write(os.path.join(d, 'stream-bot', 'migrations', 'meta',
                                                                 '_journal.json'), b'{"entries": [], "x": "\xff"}')),
     ['_journal.json', 'UTF-8']),
    ('journal-missing', file_case(lambda d: os.unlink(os.path.join(d, 'stream-bot', 'migrations', 'meta',
                                                                   '_journal.json'))), ['_journal.json']),
    ('journal-tag-traversal', file_case(lambda d: _journal(d, 'stream-bot', _outside('../../../etc/passwd'))),
     ['../../../etc/passwd', 'outside']),
    ('journal-tag-absolute', file_case(lambda d: _journal(d, 'stream-bot', _outside('/etc/passwd'))),
     ['/etc/passwd', 'outside']),
    ('journal-tag-missing-file', file_case(lambda d: _journal(d, 'stream-bot', _outside('0005_not_there'))),
     ['0005_not_there']),
    ('journal-when-word', file_case(lambda d: _journal(d, 'stream-bot', lambda j: j['entries'][-1].update(
        when='yesterday'))), ['yesterday']),
    ('journal-entries-object', file_case(lambda d: _journal(d, 'stream-bot', lambda j: j.update(entries={}))),
     ['entries']),
    ('alembic-revision-syntax-error', file_case(_alembic_file('007_broken.py', b'revision = "007\n')),
     ['007_broken.py']),
    ('alembic-revision-not-utf8', file_case(_alembic_file(
        '007_latin1.py', b'# caf\xe9\nrevision = "007"\ndown_revision = "006"\n')), ['007_latin1.py']),
    ('alembic-revision-unknown-parent', file_case(_alembic_file(
        '007_orphan.py', b'revision = "007"\ndown_revision = "zzz"\n')), ['zzz']),
    ('alembic-ini-missing-location', file_case(lambda d: _write(os.path.join(d, 'dashboard', 'alembic.ini'),
                                                                b'[alembic]\n')), ['script_location']),
]


def _errors(output):
    """The lines a user reads as the error: fatal/failed task results and ERROR! lines."""
    keep = []
    for line in output.splitlines():
        if line.startswith(('fatal:', 'failed:', 'ERROR!', '[ERROR]')) or 'FAILED!' in line \
                or line.lstrip().startswith(('"msg"', 'msg:')):
            keep.append(line)
    return '\n'.join(keep)


def _case_id(case):
    return case.values[0] if hasattr(case, 'values') else case[0]


@pytest.mark.parametrize('case,mutate,expected', CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_a_clear_error_before_anything_changes(sweep_lab, tmp_path, case, mutate, expected):
    lab = sweep_lab
    case_dir = str(tmp_path / 'services')
    shutil.copytree(lab.services_dir, case_dir)
    shutil.rmtree(lab.backup_dir, ignore_errors=True)
    before_audit = len(lab.audit())
    proc = lab.play(**mutate(lab, case_dir))
    errors = _errors(proc.output)
    changed = lab.snapshot() != lab.initial
    if changed:  # put the homelab back for the next cases, then fail this one
        lab.initial = _prepare(lab)
    assert proc.returncode != 0, 'accepted:\n' + proc.stdout[-4000:]
    for text in expected:
        assert text in errors, 'the error does not name %r:\n%s' % (text, (errors or proc.output)[-4000:])
    assert 'Traceback' not in proc.output, proc.output[-4000:]
    assert lab.canary not in proc.output and lab.pg.password not in proc.output, 'a password in the output'
    # before anything changed
    assert not changed, 'the databases changed'
    assert lab.backups() == [], 'a backup was taken before the error'
    new = lab.audit()[before_audit:]
    applies = [r for r in new if r.get('source') != 'role']
    assert applies == [], applies
    assert lab.holders() == {}
    # one audit record for the attempt: the run was refused, why (the same error), nothing changed
    assert len(new) == 1 and new[0].get('outcome') == 'refused', new
    record = new[0]
    assert record['source'] == 'role' and record['changed'] is False and record['recovery'] == 'nothing was changed'
    assert record['action'] == 'apply' or case == 'action-unknown', record
    assert record['run_id'], record
    for text in expected:
        assert text in record['error'], 'the audit record does not name %r: %s' % (text, record['error'])
    line = json.dumps(record)
    assert lab.canary not in line and lab.pg.password not in line, 'a password in the audit record'
    # scheme names in a hint ("use postgresql://, postgres:// ...") are fine, a URL is not: the record cuts it
    assert not re.search(r'\b(?!https?://)[a-z][a-z0-9+.-]*://[^\s,;\'".]', record['error']), record['error']
    assert not [db.name for db in lab.dbs.values() if db.name in line], 'a database URL in the audit record'


def test_malicious_table_and_schema_names_are_names_not_sql(lab, drizzle_peer):
    """Tracking table and schema names are identifiers of the user's choosing, quoted, never SQL.

    `'; DROP TABLE x; --` as the drizzle bots' migrations_table and migrations_schema, and as the dashboard's
    version_table (in its alembic.ini too, which its env.py reads): the run succeeds, the tracking tables
    carry that literal name, drizzle-orm and alembic with the same settings agree, and table x is still there.
    """
    ini = os.path.join(lab.services_dir, 'dashboard', 'alembic.ini')
    with open(ini) as fh:
        text = fh.read()
    with open(ini, 'w') as fh:
        fh.write(text.replace('[alembic]\n', '[alembic]\nversion_table = %s\n' % DROP, 1))
    for db in lab.dbs.values():
        db.execute('CREATE TABLE x (id int PRIMARY KEY); INSERT INTO x VALUES (1)')
    services = [lab.spec('dashboard', version_table=DROP),
                lab.spec('stream-bot', depends_on=['dashboard'], migrations_table=DROP, migrations_schema=DROP),
                lab.spec('discord-bot', depends_on=['dashboard', 'stream-bot'], migrations_table=DROP,
                         migrations_schema=DROP)]
    proc = lab.play(migrate_all_services=services)
    assert proc.returncode == 0, proc.output[-5000:]
    for name, db in lab.dbs.items():
        assert db.query('SELECT id FROM x') == [(1,)], name
    assert lab.alembic_current() == ['006']
    assert lab.dbs['dashboard'].query('SELECT version_num FROM "%s"' % DROP.replace('"', '""')) == [('006',)]
    for bot in ('stream-bot', 'discord-bot'):
        folder = os.path.join(lab.services_dir, bot, 'migrations')
        theirs = drizzle_peer.status(folder, lab.dbs[bot].url, table=DROP, schema=DROP)
        assert theirs['pending'] == [] and theirs['applied'] == lab.revisions(bot)[1:], theirs
        assert lab.dbs[bot].query("SELECT to_regclass('drizzle.__drizzle_migrations')")[0][0] is None
    again = lab.play(migrate_all_services=services)
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.output[-3000:]
