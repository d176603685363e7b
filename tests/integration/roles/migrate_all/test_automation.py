"""What AWX/AAP, Semaphore and ansible-runner get from a migrate_all run: set_stats with the outcome per service
(the status summary in check mode; the refusal when refused), kept in ansible-runner's artifacts, and audit
records that name the user AWX (awx_user_name / tower_user_name) or Semaphore (semaphore_vars.task_details.username)
says started the run. The real ansible-runner and ansible-playbook on the example homelab (real PostgreSQL)."""

import json
import os

import pytest

from harness.ansible import ansible_env, run_playbook
from integration.roles.migrate_all.test_role import INVENTORY, PLAYBOOK, homelab, refused  # noqa: F401  # pylint: disable=unused-import

from ansible_collections.homelab.migrations.plugins.filter import run_info as auto

pytestmark = pytest.mark.peer


def test_run_user_reads_awx_and_semaphore_variables():
    assert auto.migrate_all_run_user({'awx_user_name': 'bo', 'semaphore_vars': None}) == 'bo'
    assert auto.migrate_all_run_user({'awx_user_name': None, 'tower_user_name': 'old'}) == 'old'
    assert auto.migrate_all_run_user({'semaphore_vars': {'task_details': {'id': 3, 'username': 'ana'}}}) == 'ana'
    for nothing in ({}, None, {'semaphore_vars': {'task_details': 'x'}}, {'awx_user_name': '  '},
                    {'semaphore_vars': {'task_details': {'username': True}}}):
        assert auto.migrate_all_run_user(nothing) == ''


def _runner(homelab, tmp_path, check=False, **extra):  # noqa: F811
    ansible_runner = pytest.importorskip('ansible_runner')
    private = tmp_path / ('runner-%d' % len(list(tmp_path.glob('runner-*'))))   # one per run: runner keeps extravars
    private.mkdir()
    env = ansible_env(homelab.env())
    for name in ('CI', 'JOB_ID'):
        env.pop(name, None)
    cmdline = '--check' if check else None
    result = ansible_runner.run(private_data_dir=str(private), playbook=PLAYBOOK, inventory=INVENTORY,
                                extravars=homelab.extra_vars(**extra), envvars=env, quiet=True, timeout=600,
                                cmdline=cmdline, settings={'suppress_ansible_output': True})
    out = result.stdout.read()
    assert homelab.canary not in out
    # the artifacts on disk, as AWX reads them: the stats of the playbook_on_stats event
    events = [e for e in result.events if e.get('event') == 'playbook_on_stats']
    assert events, out[-3000:]
    artifact = events[-1]['event_data'].get('artifact_data') or {}
    return result, out, artifact


def test_ansible_runner_artifacts_hold_the_outcome_per_service_and_the_awx_user(homelab, tmp_path):  # noqa: F811
    result, out, artifact = _runner(homelab, tmp_path, confirm=True, awx_job_id=42, awx_user_name='bo')
    assert result.status == 'successful', out[-3000:]
    stats = artifact['homelab_migrations']['localhost']
    assert stats['outcome'] == 'success' and stats['action'] == 'apply' and stats['check_mode'] is False
    assert set(stats['services']) == {'dashboard', 'stream-bot', 'discord-bot'}
    dash = stats['services']['dashboard']
    assert dash['outcome'] == 'success' and dash['from'] is None and dash['to'] == '006'
    assert dash['applied'] == ['001', '002', '003', '004', '005', '006'] and dash['backup']
    assert stats['run_id'] == homelab.role_records()[0]['run_id']
    assert homelab.canary not in json.dumps(artifact)
    # every audit record of the run (the modules' and the role's) names the AWX user
    assert set(r['user'] for r in homelab.audit()) == {'bo'}
    # again: nothing to do, the stats say so
    result, out, artifact = _runner(homelab, tmp_path, confirm=True, tower_user_name='old-tower')
    assert result.status == 'successful', out[-3000:]
    assert artifact['homelab_migrations']['localhost']['outcome'] == 'unchanged'
    assert [r['user'] for r in homelab.audit()][-1] == 'old-tower'


def test_check_mode_stats_hold_the_status_summary(homelab, tmp_path):  # noqa: F811
    result, out, artifact = _runner(homelab, tmp_path, check=True)
    assert result.status == 'successful', out[-3000:]
    stats = artifact['homelab_migrations']['localhost']
    assert stats['outcome'] == 'check' and stats['check_mode'] is True and stats['overall_status'] == 'pending'
    pending = ['0000_initial_schema', '0001_add_ticket_categories', '0002_add_stream_notifications']
    assert stats['services']['discord-bot']['pending'] == pending
    assert stats['services']['dashboard']['status'] == 'pending' and stats['services']['dashboard']['current'] is None
    assert stats['total_pending'] == 14
    assert not os.path.exists(homelab.audit_log)


def test_a_refused_semaphore_run_publishes_the_refusal_and_names_the_semaphore_user(homelab, tmp_path):  # noqa: F811
    semaphore_vars = {'task_details': {'id': 17, 'username': 'ana', 'message': 'nightly'}}
    result, out, artifact = _runner(homelab, tmp_path, confirm=True, semaphore_vars=semaphore_vars,
                                    migrate_all_acton='rollback')
    assert result.status == 'failed', out[-3000:]
    stats = artifact['homelab_migrations']['localhost']
    assert stats['outcome'] == 'refused' and 'migrate_all_acton' in stats['error']
    record = refused(homelab, homelab.audit())
    assert record['user'] == 'ana'


def test_semaphore_style_playbook_run_names_the_user(homelab):  # noqa: F811
    """ansible-playbook with the extra vars Semaphore passes (no ansible-runner): the records name its user."""
    semaphore_vars = {'task_details': {'id': 18, 'username': 'ana', 'type': ''}}
    proc = homelab.play(tags='dashboard', semaphore_vars=semaphore_vars)
    assert proc.returncode == 0, proc.output[-3000:]
    records = homelab.audit()
    assert records and set(r['user'] for r in records) == {'ana'}


def _inventory_claiming(tmp_path, **claims):
    """A copy of the example inventory whose group vars claim who runs it (anyone who can edit it can)."""
    import yaml
    with open(INVENTORY) as fh:
        inventory = yaml.safe_load(fh)
    inventory['all']['children']['migrations']['vars'].update(claims)
    path = tmp_path / 'claiming.yml'
    path.write_text(yaml.safe_dump(inventory))
    return str(path)


def test_the_audit_user_comes_from_extra_vars_not_from_the_inventory(homelab, tmp_path):  # noqa: F811
    """AWX and Semaphore pass the user as extra vars; an inventory (a file in the repository, editable by whoever
    can push) setting awx_user_name must not rename the Semaphore user, nor name a user on a plain run."""
    inventory = _inventory_claiming(tmp_path, awx_user_name='mallory',
                                    semaphore_vars={'task_details': {'username': 'mallory'}})
    ev = homelab.extra_vars(semaphore_vars={'task_details': {'id': 19, 'username': 'ana'}})
    proc = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=ev, tags='dashboard', env=homelab.env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert set(r['user'] for r in homelab.audit()) == {'ana'}
    # a plain run: the inventory's claim is no user either (the records name the managed host's user)
    proc = run_playbook(PLAYBOOK, inventory=inventory, extra_vars=homelab.extra_vars(), tags='stream-bot',
                        env=homelab.env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    users = set(r['user'] for r in homelab.audit() if r.get('service') == 'stream-bot')
    assert users and 'mallory' not in users, users
