"""Misspelt inputs of the migrate_all role are refused before anything is touched, with a "did you mean":
unknown migrate_all_* variables, --tags / --skip-tags that name no service; hosts without services are
skipped quietly. Through the real ansible-playbook on the example homelab (real PostgreSQL)."""

import json
import os

import pytest

from harness.ansible import REPO, run_playbook
from integration.roles.migrate_all.test_role import INVENTORY, PLAYBOOK, homelab, refused  # noqa: F401  # pylint: disable=unused-import

from ansible_collections.homelab.migrations.plugins.filter import input_checks as checks

pytestmark = pytest.mark.peer


# ------------------------------------------------------------------------------------------ the filters
def test_unknown_vars_are_named_with_the_closest_option():
    options = {'migrate_all_action': {}, 'migrate_all_confirm': {}, 'migrate_all_backup_dir': {}}
    names = ['migrate_all_acton', 'migrate_all_confirm', 'migrate_all__run_id', 'migrate_all_audit',
             'migrate_all_hosts', 'migrate_all_backupdir', 'migrate_all_zzzz']
    msg = checks.migrate_all_unknown_vars(names, options)
    assert 'migrate_all_acton (did you mean migrate_all_action?)' in msg
    assert 'migrate_all_backupdir (did you mean migrate_all_backup_dir?)' in msg
    assert 'migrate_all_zzzz' in msg and 'migrate_all_zzzz (did' not in msg
    assert 'migrate_all__run_id' not in msg and 'migrate_all_audit' not in msg and 'migrate_all_hosts,' not in msg
    assert 'Nothing was changed' in msg
    assert checks.migrate_all_unknown_vars(['migrate_all_action', 'other_var'], options) == ''


def test_unknown_tags_name_no_service_of_any_host():
    per_host = [[{'name': 'dashboard'}, {'name': 'stream-bot'}], [{'name': 'discord-bot'}], []]
    assert checks.migrate_all_unknown_tags(['all'], [], per_host) == ''
    assert checks.migrate_all_unknown_tags(['discord-bot', 'always'], ['never'], per_host) == ''
    # molecule runs every converge with --skip-tags molecule-notest,notest: no refusal for those
    assert checks.migrate_all_unknown_tags(['all'], ['molecule-notest', 'notest'], per_host) == ''
    assert checks.migrate_all_unknown_tags(['all'], ['molecule-idempotence-notest'], per_host) == ''
    assert 'notest' in checks.migrate_all_unknown_tags(['notest'], [], per_host)
    msg = checks.migrate_all_unknown_tags(['stream-bto'], [], per_host)
    assert '--tags stream-bto (did you mean stream-bot?)' in msg and 'do nothing' in msg
    msg = checks.migrate_all_unknown_tags(['all'], ['dashbord'], per_host)
    assert '--skip-tags dashbord (did you mean dashboard?)' in msg and 'not skip anything' in msg
    msg = checks.migrate_all_unknown_tags(['stream-bot', 'xyz'], [], per_host)
    assert '--tags xyz' in msg and 'did you mean' not in msg
    # tags are case-sensitive: another case names no service, and the suggestion finds it
    msg = checks.migrate_all_unknown_tags(['all'], ['DASHBOARD'], per_host)
    assert '--skip-tags DASHBOARD (did you mean dashboard?)' in msg, msg
    msg = checks.migrate_all_unknown_tags(['Stream-Bot'], [], per_host)
    assert '--tags Stream-Bot (did you mean stream-bot?)' in msg, msg
    # malformed service lists (the spec check reports them) do not break the tag check
    assert checks.migrate_all_unknown_tags(['a'], [], ['oops', None, [{'name': 'a'}]]) == ''


def test_unknown_vars_in_another_case_or_with_a_misspelt_prefix_are_named():
    """Ansible variable names are case-sensitive: Migrate_all_action, MIGRATE_ALL_ACTION, migrateall_action,
    mirgate_all_action and migrate_al_action are all ignored by the role, so they are refused like
    migrate_all_acton; unrelated names (migrations_dir, migrate_action, ansible_*) are not."""
    options = {'migrate_all_action': {}, 'migrate_all_confirm': {}, 'migrate_all_backup_dir': {}}
    for name in ('Migrate_all_action', 'MIGRATE_ALL_ACTION', 'migrateall_action', 'mirgate_all_action',
                 'migrate_al_action', 'migrate-all_action', 'Migrate_All_Confirm'):
        msg = checks.migrate_all_unknown_vars([name, 'migrate_all_action'], options)
        assert '%s (did you mean migrate_all_' % name in msg, (name, msg)
    for name in ('migrations_dir', 'migrate_action', 'ansible_check_mode', 'migrate_all__run_id', 'homelab_x',
                 'Migrate_all__x', 'migrate_all_hosts', 'migrate_all_audit'):
        assert checks.migrate_all_unknown_vars([name], options) == '', name


# ------------------------------------------------------------------------------------------- the role
def test_misspelt_action_is_refused_before_anything_is_touched(homelab):  # noqa: F811
    before = homelab.snapshot()
    proc = homelab.play(tags='stream-bot', migrate_all_acton='rollback')
    assert proc.returncode != 0, proc.output[-3000:]
    assert 'migrate_all_acton (did you mean migrate_all_action?)' in proc.output
    assert homelab.snapshot() == before
    record = refused(homelab, homelab.audit())
    assert 'migrate_all_acton' in record['error']
    assert homelab.backups() == []


def test_action_in_another_case_is_refused_before_anything_is_touched(homelab):  # noqa: F811
    """-e Migrate_all_action=rollback (a capital M) was ignored by the role: the run applied stream-bot, exit 0."""
    before = homelab.snapshot()
    proc = homelab.play(tags='stream-bot', Migrate_all_action='rollback')
    assert proc.returncode != 0, proc.output[-3000:]
    assert 'Migrate_all_action (did you mean migrate_all_action?)' in proc.output
    assert homelab.snapshot() == before
    refused(homelab, homelab.audit())
    assert homelab.backups() == []


def test_misspelt_tag_on_an_apply_is_refused(homelab):  # noqa: F811
    before = homelab.snapshot()
    proc = homelab.play(tags='stream-bto')
    assert proc.returncode != 0, proc.output[-3000:]
    assert '--tags stream-bto (did you mean stream-bot?)' in proc.output
    assert 'nothing to do' not in proc.output
    assert homelab.snapshot() == before
    refused(homelab, homelab.audit())


def test_misspelt_skip_tag_is_refused_in_check_mode_too(homelab):  # noqa: F811
    proc = run_playbook(PLAYBOOK, inventory=INVENTORY, extra_vars=homelab.extra_vars(), check=True,
                        skip_tags='dashbord', env=homelab.env())
    proc.output = proc.stdout + proc.stderr
    assert proc.returncode != 0, proc.output[-3000:]
    assert '--skip-tags dashbord (did you mean dashboard?)' in proc.output
    assert not os.path.exists(homelab.audit_log)


def test_hosts_without_services_are_skipped_quietly_and_the_group_is_the_default(homelab, tmp_path):  # noqa: F811
    """The play runs on the group `migrations` by default (a host outside it is not touched, even with broken
    variables); migrate_all_hosts chooses other hosts; a host without migrate_all_services is skipped quietly
    (no failure, no record)."""
    inventory = tmp_path / 'more.yml'
    inventory.write_text(json.dumps({'all': {'children': {
        'others': {'hosts': {'bystander': {'ansible_connection': 'local',
                                           'ansible_python_interpreter': '{{ ansible_playbook_python }}'}}},
        'elsewhere': {'hosts': {'outsider': {'ansible_connection': 'local',
                                             'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                                             'migrate_all_services': 'not even a list'}}}}}}))
    ev = homelab.extra_vars(confirm=True)
    proc = run_playbook(PLAYBOOK, inventory=None, extra_vars=ev, check=True, env=homelab.env(), cwd=REPO,
                        extra_args=['-i', INVENTORY, '-i', str(inventory)])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'outsider' not in proc.stdout and 'bystander' not in proc.stdout
    proc = run_playbook(PLAYBOOK, inventory=None, extra_vars=dict(ev, migrate_all_hosts='migrations:others'),
                        env=homelab.env(), cwd=REPO, extra_args=['-i', INVENTORY, '-i', str(inventory)])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'outsider' not in out  # bystander ended quietly: without the skip it fails the argument specs
    assert 'failed=0' in out
    records = homelab.role_records()
    assert 'refused' not in [r['outcome'] for r in records]
    assert set(r['service'] for r in records if r['outcome'] == 'success') == {'dashboard', 'stream-bot',
                                                                               'discord-bot'}
    count = len(homelab.audit())
    proc = run_playbook(PLAYBOOK, inventory=None, extra_vars=dict(ev, migrate_all_hosts='outsider'), check=True,
                        env=homelab.env(), cwd=REPO, extra_args=['-i', INVENTORY, '-i', str(inventory)])
    assert proc.returncode != 0 and 'outsider' in proc.stdout and 'migrate_all_services' in proc.stdout
    assert len(homelab.audit()) == count


def test_spec_errors_message_is_short_and_names_the_misspelt_key():
    result = {'argument_errors': ['missing required arguments: database_url found in migrate_all_services',
                                  'migrate_all_services.databse_url. Supported parameters include: name, tool.']}
    services = [{'name': 'dashboard', 'tool': 'alembic'}, {'name': 'stream-bot', 'databse_url': 'postgresql://x'}]
    msg = checks.migrate_all_spec_errors(result, services, {'name': {}, 'tool': {}, 'database_url': {}})
    assert 'migrate_all_services[1] (stream-bot): unknown key databse_url (did you mean database_url?)' in msg
    assert '..' not in msg and 'postgresql://' not in msg and 'Nothing was changed' in msg
    assert checks.migrate_all_spec_errors({'changed': False}, services, {}) == ''


def test_misspelt_service_key_is_refused_in_a_short_message(homelab):  # noqa: F811
    services = [homelab.spec(name) for name in ('dashboard', 'stream-bot', 'discord-bot')]
    services[1]['databse_url'] = services[1].pop('database_url')
    proc = homelab.play(migrate_all_services=services)
    assert proc.returncode != 0
    fatal = [line for line in proc.stdout.splitlines() if line.startswith('fatal:')]
    assert fatal and max(len(line) for line in fatal) < 1500, [len(line) for line in fatal]
    # the refusing task prints the reason; the play's last failure only names that task (each error once)
    assert any('unknown key databse_url (did you mean database_url?)' in line for line in fatal), fatal
    assert 'argument_spec_data' not in proc.stdout
    refused(homelab, homelab.audit())


def test_skip_tags_naming_every_service_does_nothing_and_says_why(homelab):  # noqa: F811
    """--skip-tags with every service: nothing is touched, exit 0, and the message names --skip-tags (it said
    '--tags all names none of the services', which was false)."""
    before = homelab.snapshot()
    proc = run_playbook(PLAYBOOK, inventory=INVENTORY, extra_vars=homelab.extra_vars(),
                        skip_tags='dashboard,stream-bot,discord-bot', env=homelab.env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    line = [ln for ln in out.splitlines() if 'none of the services' in ln]
    assert line and '--skip-tags' in line[0] and 'nothing to do' in line[0], out[-3000:]
    assert all(name in line[0] for name in ('dashboard', 'stream-bot', 'discord-bot')), line
    assert 'names none' not in out
    assert homelab.snapshot() == before
    assert homelab.backups() == []
