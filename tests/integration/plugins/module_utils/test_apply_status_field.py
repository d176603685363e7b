"""The apply's ``status`` return field is homelab_migration_status's entry of the service right after the run.

Real server. Each case applies, then reads the status the way the status module does (build_report, and once the
module itself) and compares the WHOLE entry. Nothing in an entry is time-dependent here: ``lock`` is the one field
that could differ by nature (the apply reports its own lock as released; a status read a moment later may see a
next run holding it), and no other run touches these databases.
"""

import os
import sys

import pytest

from harness import drizzle_gen
from harness.ansible import REPO, run_module

from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
STREAM_BOT = os.path.join(SERVICES, 'stream-bot')


def dashboard(url):
    return service_defaults(dict(name='dashboard', tool='alembic', path=os.path.join(SERVICES, 'dashboard'),
                                 database_url=url, alembic_command=[ALEMBIC]))


def stream_bot(url, path=STREAM_BOT):
    return service_defaults(dict(name='stream-bot', tool='drizzle', path=str(path), database_url=url))


def apply_then_status(spec, **params):
    """(the apply's result, the status entry read right after it)."""
    result = run_apply(spec, validate_service(spec), params)
    return result, build_report([spec])['services'][spec['name']]


@pytest.mark.parametrize('make_spec, targets', [
    (dashboard, ['003', 'head', '-2', 'base']),
    (stream_bot, ['0001_add_giveaways', 'head', '-1', 'base']),
], ids=['alembic', 'drizzle'])
def test_status_after_each_apply_is_the_status_modules_entry(fresh_db, make_spec, targets):
    spec = make_spec(fresh_db.password_url)
    for target in targets:
        result, entry = apply_then_status(spec, target=target)
        assert not result.get('failed'), result.get('msg')
        assert result['changed']
        assert result['status'] == entry, target
        assert result['status']['current_revision'] == result['to_revision']
    result, entry = apply_then_status(spec, target='base')  # nothing to do: the state read under the lock
    assert result['outcome'] == 'unchanged' and result['status'] == entry


def test_pending_findings_are_the_status_modules(fresh_db, tmp_path):
    drizzle_gen.users_then(str(tmp_path), '0001_email_idx', 'CREATE INDEX CONCURRENTLY "users_email_idx" '
                                                            'ON "users" ("email");')
    spec = stream_bot(fresh_db.password_url, tmp_path)
    result, entry = apply_then_status(spec, target='0000_users')
    assert not result.get('failed'), result.get('msg')
    assert entry['pending_migrations'] == ['0001_email_idx']
    assert 'not_in_transaction' in [f['code'] for f in entry['findings']] and 'lint' in entry
    assert result['status'] == entry


def test_failed_and_refused_applies_carry_the_status_after(fresh_db, tmp_path):
    drizzle_gen.users_then(str(tmp_path), '0001_broken', 'SELECT no_such_function_0001();')
    spec = stream_bot(fresh_db.password_url, tmp_path)
    result, entry = apply_then_status(spec)
    assert result.get('failed') and result['error_code'] == 'apply_failed' and result['untouched']
    assert result['status'] == entry and entry['current_revision'] is None
    result, entry = apply_then_status(spec, target='0000_users')
    assert not result.get('failed'), result.get('msg')
    result, entry = apply_then_status(spec, expect_from='base')  # moved since: refused before anything ran
    assert result.get('failed') and result['conflict']
    assert result['status'] == entry and entry['current_revision'] == '0000_users'


def test_check_mode_returns_no_status(fresh_db):
    spec = dashboard(fresh_db.password_url)
    result = run_apply(spec, validate_service(spec), {}, check_mode=True)
    assert not result.get('failed') and result['changed'] and 'status' not in result


def test_the_modules_agree(fresh_db):
    url = fresh_db.password_url
    spec = dict(name='dashboard', tool='alembic', path=os.path.join(SERVICES, 'dashboard'), database_url=url,
                alembic_command=[ALEMBIC])
    applied, proc = run_module('homelab_migration_apply', {'service': spec, 'target': '004'})
    assert not applied.get('failed'), applied.get('msg')
    status, proc = run_module('homelab_migration_status', {'services': [spec]})
    assert not status.get('failed'), status.get('msg')
    assert applied['status'] == status['services']['dashboard']
    assert applied['status']['status'] == 'pending' and applied['status']['current_revision'] == '004'
    assert fresh_db.password not in str(applied['status'])
