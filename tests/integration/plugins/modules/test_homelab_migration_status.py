"""homelab_migration_status through real ansible-playbook, against real PostgreSQL, alembic and drizzle-orm."""

import json
import os
import shutil
import subprocess
import sys
from urllib.parse import quote

import psycopg2
import pytest

from harness.ansible import run_module
from harness.pg import free_port
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
STREAM = ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
          '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements']
MODULE = 'homelab_migration_status'


def homelab(urls, root=SERVICES):
    return [
        dict(name='dashboard', tool='alembic', path=os.path.join(root, 'dashboard'), database_url=urls['dashboard'],
             alembic_command=[ALEMBIC]),
        dict(name='stream-bot', tool='drizzle', path=os.path.join(root, 'stream-bot'),
             database_url=urls['stream-bot'], depends_on=['dashboard']),
        dict(name='discord-bot', tool='drizzle', path=os.path.join(root, 'discord-bot'),
             database_url=urls['discord-bot'], depends_on=['dashboard', 'stream-bot']),
    ]


@pytest.fixture
def three(make_db):
    return {'dashboard': make_db(), 'stream-bot': make_db(), 'discord-bot': make_db()}


def urls_of(dbs):
    return dict((name, db.password_url) for name, db in dbs.items())


def snapshots(dbs):
    return dict((name, db.snapshot()) for name, db in dbs.items())


def assert_clean_output(proc, result, password):
    for text in (proc.stdout, proc.stderr, json.dumps(result)):
        assert password not in text and quote(password, safe='') not in text
        assert 'Traceback' not in text


def alembic_to(db, revision):
    out = subprocess.run([ALEMBIC, 'upgrade', revision], cwd=os.path.join(SERVICES, 'dashboard'),
                         env=dict(os.environ, DATABASE_URL=db.url), capture_output=True, text=True, timeout=180,
                         check=False)
    assert out.returncode == 0, out.stderr


def test_mixed_homelab_at_two_points(three, drizzle_peer, tmp_path):
    specs = homelab(urls_of(three))
    result, proc = run_module(MODULE, {'services': specs})
    assert not result.get('failed'), result
    assert result['changed'] is False and result['overall_status'] == 'pending'
    assert result['total_pending'] == 14

    alembic_to(three['dashboard'], '004')
    partial = str(tmp_path / 'stream')
    shutil.copytree(os.path.join(SERVICES, 'stream-bot', 'migrations'), partial)
    with open(os.path.join(partial, 'meta', '_journal.json')) as fh:
        journal = json.load(fh)
    journal['entries'] = journal['entries'][:4]
    with open(os.path.join(partial, 'meta', '_journal.json'), 'w') as fh:
        json.dump(journal, fh)
    drizzle_peer.migrate(partial, three['stream-bot'].url)
    drizzle_peer.migrate(os.path.join(SERVICES, 'discord-bot', 'migrations'), three['discord-bot'].url)
    before = snapshots(three)

    result, proc = run_module(MODULE, {'services': specs}, check=True)
    assert not result.get('failed'), result
    services = result['services']
    assert services['dashboard']['current_revision'] == '004'
    assert services['dashboard']['pending_migrations'] == ['005', '006']
    assert services['stream-bot']['current_revision'] == STREAM[3]
    assert services['stream-bot']['pending_migrations'] == [STREAM[4]]
    assert services['discord-bot']['status'] == 'up_to_date'
    assert result['total_pending'] == 3 and result['success'] is True
    assert snapshots(three) == before
    assert_clean_output(proc, result, three['dashboard'].password)


def test_unreachable_service_reports_the_others_and_fail_on_error(three, pg):
    urls = urls_of(three)
    urls['discord-bot'] = 'postgresql://homelab:%s@127.0.0.1:%d/x' % (quote(pg.password, safe=''), free_port())
    args = {'services': homelab(urls), 'connect_timeout': 3}
    result, proc = run_module(MODULE, args)
    assert not result.get('failed'), result
    assert result['services']['discord-bot']['status'] == 'error'
    assert result['services']['discord-bot']['problems'][0]['code'] == 'unreachable'
    assert result['services']['stream-bot']['status'] == 'pending'
    assert result['overall_status'] == 'error' and result['success'] is False
    assert_clean_output(proc, result, pg.password)

    result, proc = run_module(MODULE, dict(args, fail_on_error=True))
    assert result['failed'] is True
    assert result['msg'].startswith('1 service(s) in error: discord-bot: ')
    assert result['services']['stream-bot']['pending'] == 5  # the report comes with the failure
    assert_clean_output(proc, result, pg.password)


@pytest.mark.parametrize('case', ['duplicate', 'unknown_dependency', 'bad_name', 'bad_url'])
def test_bad_service_lists_fail_before_reading(three, case):
    specs = homelab(urls_of(three))
    expected = {
        'duplicate': "service name 'stream-bot' is used twice",
        'unknown_dependency': "service 'discord-bot' depends on 'grafana', which is not in the service list",
        'bad_name': "service name 'Stream Bot' is not valid",
        'bad_url': "service 'dashboard': database_url mysql://",
    }[case]
    if case == 'duplicate':
        specs[2]['name'] = 'stream-bot'
        specs[2]['depends_on'] = ['dashboard']
    elif case == 'unknown_dependency':
        specs[2]['depends_on'] = ['grafana']
    elif case == 'bad_name':
        specs[1]['name'] = 'Stream Bot'
        specs[2]['depends_on'] = []
    else:
        specs[0]['database_url'] = specs[0]['database_url'].replace('postgresql://', 'mysql://')
    before = snapshots(three)
    result, proc = run_module(MODULE, {'services': specs}, verbosity=3)
    assert result['failed'] is True and expected in result['msg'], result['msg']
    assert 'nothing was read or changed' in result['msg']
    assert snapshots(three) == before
    assert 'services' not in result or not isinstance(result.get('services'), dict)
    assert_clean_output(proc, result, three['dashboard'].password)


@pytest.mark.parametrize('case', ['wrong_password', 'missing_database', 'bad_journal', 'revision_cycle',
                                  'missing_journal_file', 'non_literal_revision', 'uninstalled_import'])
def test_broken_service_is_an_error_with_a_clear_message(three, pg, tmp_path, case):
    root = str(tmp_path / 'services')
    shutil.copytree(SERVICES, root)
    urls = urls_of(three)
    victim = 'stream-bot'
    if case == 'wrong_password':
        urls[victim] = urls[victim].replace(quote(pg.password, safe=''), quote(pg.password + 'x', safe=''))
        expected = ('unreachable', 'password authentication failed')
    elif case == 'missing_database':
        urls[victim] = pg.url('no_db_like_this', password=True)
        expected = ('unreachable', 'does not exist')
    elif case == 'bad_journal':
        with open(os.path.join(root, 'stream-bot', 'migrations', 'meta', '_journal.json'), 'w') as fh:
            fh.write('{"entries": [{"idx": 0, "tag": ')
        expected = ('bad_config', 'not valid JSON')
    elif case == 'missing_journal_file':
        os.unlink(os.path.join(root, 'stream-bot', 'migrations', STREAM[2] + '.sql'))
        expected = ('missing_file', STREAM[2])
    elif case in ('non_literal_revision', 'uninstalled_import'):
        victim = 'dashboard'
        path = os.path.join(root, 'dashboard', 'alembic', 'versions', '003_create_user_preferences.py')
        with open(path) as fh:
            text = fh.read()
        if case == 'non_literal_revision':
            text = text.replace("revision = '003'", "revision = '00' + '3'").replace(
                "revision: str = '003'", "revision: str = '00' + '3'")
            expected = ('bad_config', '003_create_user_preferences.py')
        else:
            # a module that is not installed: status must not import (execute) revision files
            text = 'import homelab_not_installed_module_xyz\n' + text
            expected = (None, None)
        with open(path, 'w') as fh:
            fh.write(text)
    else:
        victim = 'dashboard'
        path = os.path.join(root, 'dashboard', 'alembic', 'versions', '002_add_email_verified.py')
        with open(path) as fh:
            lines = fh.read().splitlines()
        with open(path, 'w') as fh:
            fh.write('\n'.join('down_revision = "005"' if line.startswith('down_revision') else line
                               for line in lines) + '\n')
        expected = ('bad_config', 'ycl')
    before = snapshots(three)
    result, proc = run_module(MODULE, {'services': homelab(urls, root=root)}, verbosity=3)
    assert not result.get('failed'), result
    entry = result['services'][victim]
    if expected == (None, None):
        assert entry['status'] == 'pending'
        assert entry['pending_migrations'] == ['001', '002', '003', '004', '005', '006']
        assert_clean_output(proc, result, pg.password)
        return
    assert entry['status'] == 'error'
    codes = [p['code'] for p in entry['problems']]
    assert expected[0] in codes, entry
    assert any(expected[1] in p['message'] for p in entry['problems']), entry['problems']
    others = [name for name in result['services'] if name != victim]
    assert all(result['services'][name]['status'] == 'pending' for name in others)
    assert snapshots(three) == before
    assert_clean_output(proc, result, pg.password)


def test_canary_password_never_in_output_at_vvv(three, pg):
    urls = urls_of(three)
    urls['dashboard'] = urls['dashboard'].replace('postgresql://', 'postgresql+psycopg2://')
    urls['discord-bot'] = urls['discord-bot'].replace('postgresql://', 'postgres://')
    result, proc = run_module(MODULE, {'services': homelab(urls)}, verbosity=3)
    assert not result.get('failed'), result
    assert_clean_output(proc, result, pg.password)
    assert 'homelab_migration_status' in proc.stdout  # -vvv really printed the invocation


def test_lock_is_visible_while_held(three):
    holder = psycopg2.connect(three['discord-bot'].url, application_name='homelab.migrations:discord-bot')
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('discord-bot'))
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
        result = run_module(MODULE, {'services': homelab(urls_of(three)), 'plan': {'lock_wait': 7}}, check=True)[0]
    finally:
        holder.close()
    lock = result['services']['discord-bot']['lock']
    assert lock['held'] is True and lock['holder']['pid'] == pid
    assert lock['holder']['application_name'] == 'homelab.migrations:discord-bot'
    assert [p['code'] for p in result['services']['discord-bot']['problems']] == ['locked']
    assert result['services']['stream-bot']['lock']['held'] is False
    # the plan says what the apply module's check mode says about a held lock (from the same lookup)
    warnings = result['services']['discord-bot']['plan']['warnings']
    assert any('locked by pid %d' % pid in w and 'up to 7s (lock_wait)' in w for w in warnings), warnings
    assert result['services']['stream-bot']['plan']['warnings'] == []


SYSTEM_PYTHON = '/usr/bin/python3'


def _lacks(module):
    if not os.path.exists(SYSTEM_PYTHON):
        return True
    out = subprocess.run([SYSTEM_PYTHON, '-c', 'import %s' % module], capture_output=True, timeout=60, check=False)
    return out.returncode != 0


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON) or not _lacks('psycopg2') or not _lacks('alembic'),
                    reason='needs a system Python without psycopg2 and alembic')
def test_missing_libraries_are_named(three, tmp_path):
    """On a managed host without psycopg2 (or alembic) the task fails saying which library to install."""
    specs = homelab(urls_of(three))
    env = {'ANSIBLE_PYTHON_INTERPRETER': SYSTEM_PYTHON}
    result, proc = run_module(MODULE, {'services': specs}, env=env)
    assert result['failed'] is True
    assert 'Failed to import the required Python library (psycopg2)' in result['msg']
    assert 'Traceback' not in proc.stdout

    # psycopg2 alone (the venv's build, same CPython minor): now alembic is what is missing
    import psycopg2
    only = tmp_path / 'only-psycopg2'
    only.mkdir()
    site = os.path.dirname(os.path.dirname(psycopg2.__file__))
    for entry in os.listdir(site):
        if entry.startswith('psycopg2'):
            os.symlink(os.path.join(site, entry), str(only / entry))
    env['PYTHONPATH'] = str(only)
    result, proc = run_module(MODULE, {'services': specs}, env=env)
    assert result['failed'] is True
    assert 'Failed to import the required Python library (alembic)' in result['msg'], result['msg']
    drizzle_only = [s for s in specs if s['tool'] == 'drizzle']
    for spec in drizzle_only:
        spec['depends_on'] = []
    result, proc = run_module(MODULE, {'services': drizzle_only}, env=env)
    assert not result.get('failed'), result.get('msg')
    assert result['services']['stream-bot']['pending'] == 5


# ------------------------------------------------------------------------ plan (the apply check mode)
PLAN_KEYS = ('changed', 'failed', 'target', 'from_revision', 'to_revision', 'applied', 'reverted', 'outcome')


def _plan_view(result):
    view = dict((k, result.get(k)) for k in PLAN_KEYS)
    view['failed'] = bool(view['failed'])
    view['steps'] = (result.get('plan') or {}).get('steps')
    view['msg'] = ' '.join(str(result.get('msg') or '').split())
    return view


def _apply_check(spec, **args):
    result, proc = run_module('homelab_migration_apply', dict(service=spec, **args), check=True)
    assert 'Traceback' not in proc.stdout + proc.stderr
    return result


@pytest.mark.parametrize('point', ['empty', 'partly', 'rollback'])
def test_plans_equal_the_apply_modules_check_mode(three, drizzle_peer, point):
    """The status task's plans are the apply module's check-mode results, read once for all services."""
    if point != 'empty':
        alembic_to(three['dashboard'], '004')
        drizzle_peer.migrate(os.path.join(SERVICES, 'discord-bot', 'migrations'), three['discord-bot'].url)
    specs = homelab(urls_of(three))
    before = snapshots(three)
    plan = {'services': ['dashboard', 'discord-bot', 'stream-bot']}
    if point == 'rollback':
        plan['target'] = '-1'
    result, proc = run_module(MODULE, {'services': specs, 'plan': plan})
    assert not result.get('failed'), result
    assert snapshots(three) == before
    for spec in specs:
        ours = result['services'][spec['name']]['plan']
        args = {'target': '-1'} if point == 'rollback' else {}
        theirs = _apply_check(spec, **args)
        assert _plan_view(ours) == _plan_view(theirs), spec['name']
    plans = dict((name, entry['plan']) for name, entry in result['services'].items())
    if point == 'empty':
        assert plans['dashboard']['applied'] == ['001', '002', '003', '004', '005', '006']
        assert plans['stream-bot']['applied'] == STREAM and plans['stream-bot']['changed'] is True
    elif point == 'partly':
        assert plans['dashboard']['from_revision'] == '004' and plans['dashboard']['to_revision'] == '006'
        assert plans['discord-bot']['changed'] is False
    else:
        assert plans['dashboard']['reverted'] == ['004'] and plans['dashboard']['to_revision'] == '003'
        assert plans['stream-bot'].get('failed') and 'only 0 migration(s)' in plans['stream-bot']['msg']
    assert snapshots(three) == before


def test_plan_refusals_and_allowances_match_apply(three, drizzle_peer, tmp_path):
    """An out-of-order entry: refused without allow_out_of_order, planned with it, exactly as apply does."""
    folder = str(tmp_path / 'stream')
    shutil.copytree(os.path.join(SERVICES, 'stream-bot', 'migrations'), folder)
    journal_path = os.path.join(folder, 'meta', '_journal.json')
    with open(journal_path) as fh:
        journal = json.load(fh)
    full = journal['entries']
    journal['entries'] = full[:2] + full[3:]
    with open(journal_path, 'w') as fh:
        json.dump(journal, fh)
    drizzle_peer.migrate(folder, three['stream-bot'].url)
    journal['entries'] = full
    with open(journal_path, 'w') as fh:
        json.dump(journal, fh)
    spec = dict(name='stream-bot', tool='drizzle', path=str(tmp_path), migrations_dir='stream',
                database_url=three['stream-bot'].password_url)
    for allow in (False, True):
        result, proc = run_module(MODULE, {'services': [spec], 'plan': {'allow_out_of_order': allow}})
        ours = result['services']['stream-bot']['plan']
        theirs = _apply_check(spec, allow_out_of_order=allow)
        assert _plan_view(ours) == _plan_view(theirs), allow
        if allow:
            assert ours['applied'] == [STREAM[2]] and not ours.get('failed')
        else:
            assert ours.get('failed') and 'allow_out_of_order' in ours['msg']
            assert not result.get('failed'), 'a plan that cannot be made does not fail the status task'


def test_plan_of_an_unknown_service_is_refused(three):
    specs = homelab(urls_of(three))
    result, proc = run_module(MODULE, {'services': specs, 'plan': {'services': ['dashbaord']}})
    assert result.get('failed')
    assert ('plan.services names dashbaord, which is not in services (dashboard, stream-bot, discord-bot)'
            in result['msg'])


def test_unreachable_service_gets_a_failed_plan(three):
    specs = homelab(urls_of(three))
    specs[1]['database_url'] = 'postgresql://nobody@127.0.0.1:%d/nothing' % free_port()
    result, proc = run_module(MODULE, {'services': specs, 'plan': {}})
    assert not result.get('failed'), result
    bad = result['services']['stream-bot']['plan']
    assert bad['failed'] and bad['changed'] is False and 'nothing was changed' in bad['msg']
    assert 'cannot connect' in bad['msg'] or 'connect' in bad['msg'], bad['msg']
    assert result['services']['dashboard']['plan']['changed'] is True


def test_plan_diff_is_the_sql_the_apply_module_shows(three, drizzle_peer):
    """--check --diff of the role shows the SQL per service, as the apply module's diff mode does."""
    alembic_to(three['dashboard'], '004')
    drizzle_peer.migrate(os.path.join(SERVICES, 'discord-bot', 'migrations'), three['discord-bot'].url)
    specs = homelab(urls_of(three))
    specs[0]['alembic_sql_preview'] = True  # the opt-in: alembic --sql runs the service's env.py
    result, proc = run_module(MODULE, {'services': specs, 'plan': {}}, check=True, diff=True)
    assert not result.get('failed'), result
    diffs = dict((d['before_header'].split(' ')[0], d) for d in result['diff'])
    assert sorted(diffs) == ['dashboard', 'stream-bot'], 'only services that would change have a diff'
    for name in ('dashboard', 'stream-bot'):
        spec = [s for s in specs if s['name'] == name][0]
        theirs, _proc = run_module('homelab_migration_apply', {'service': spec}, check=True, diff=True)
        assert diffs[name]['prepared'] == theirs['diff']['prepared'], name
        assert diffs[name]['before'] == theirs['diff']['before'] and diffs[name]['after'] == theirs['diff']['after']
    assert 'CREATE TABLE' in diffs['stream-bot']['prepared']
    assert "UPDATE alembic_version SET version_num='006'" in diffs['dashboard']['prepared']
    # without diff mode, no SQL is rendered
    plain, _proc = run_module(MODULE, {'services': specs, 'plan': {}}, check=True)
    assert 'diff' not in plain and 'diff' not in plain['services']['dashboard']['plan']
