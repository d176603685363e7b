"""apply.py with the real alembic adapter: the example dashboard, the real `alembic` CLI, real PostgreSQL."""

import os
import shutil
import subprocess
import sys

import pytest
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import audit
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
DASHBOARD = ['001', '002', '003', '004', '005', '006']


def dashboard(url, root=SERVICES, **extra):
    spec = service_defaults(dict(name='dashboard', tool='alembic', path=os.path.join(root, 'dashboard'),
                                 database_url=url, alembic_command=[ALEMBIC], **extra))
    return spec, validate_service(spec)


def run(svc, check=False, diff=False, **params):
    return run_apply(svc[0], svc[1], params, check_mode=check, diff=diff)


def cli_current(db, root=SERVICES):
    """`alembic current` as the service's own tool prints it."""
    out = subprocess.run([ALEMBIC, 'current'], cwd=os.path.join(root, 'dashboard'), capture_output=True, text=True,
                         env=dict(os.environ, DATABASE_URL=db.url), timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def plain_alembic(db, *args):
    out = subprocess.run([ALEMBIC] + list(args), cwd=os.path.join(SERVICES, 'dashboard'), capture_output=True,
                         text=True, env=dict(os.environ, DATABASE_URL=db.url), timeout=180, check=False)
    assert out.returncode == 0, out.stderr


def test_four_passes_and_agreement_with_the_cli(fresh_db, make_db):
    svc = dashboard(fresh_db.password_url, alembic_sql_preview=True)
    empty = fresh_db.snapshot()
    passes = [run(svc, check=True, diff=True), run(svc, diff=True), run(svc, check=True), run(svc)]
    assert [p['changed'] for p in passes] == [True, True, False, False]
    assert not any(p.get('failed') for p in passes), [p.get('msg') for p in passes]
    assert passes[0]['applied'] == passes[1]['applied'] == DASHBOARD
    assert passes[0]['to_revision'] == '006' and passes[1]['to_revision'] == '006'
    assert 'CREATE TABLE users' in passes[0]['diff']['prepared']
    assert passes[0]['diff']['prepared'] == passes[1]['diff']['prepared']
    assert cli_current(fresh_db) == ['006']
    # the same schema as plain `alembic upgrade head`
    other = make_db()
    plain_alembic(other, 'upgrade', 'head')
    assert fresh_db.snapshot() == other.snapshot()
    assert fresh_db.snapshot() != empty

    down = [run(svc, check=True, target='002'), run(svc, target='002'), run(svc, check=True, target='002'),
            run(svc, target='002')]
    assert [p['changed'] for p in down] == [True, True, False, False]
    assert down[1]['reverted'] == ['006', '005', '004', '003'] and down[1]['to_revision'] == '002'
    assert cli_current(fresh_db) == ['002']
    plain_alembic(other, 'downgrade', '002')
    assert fresh_db.snapshot() == other.snapshot()

    assert run(svc, target='-1')['reverted'] == ['002']
    assert run(svc, target='base')['reverted'] == ['001']
    assert cli_current(fresh_db) == []


def test_check_mode_touches_nothing(fresh_db):
    svc = dashboard(fresh_db.password_url)
    before = fresh_db.snapshot()
    result = run(svc, check=True, diff=True)
    assert result['changed'] is True and result['outcome'] == 'check'
    assert fresh_db.snapshot() == before and fresh_db.tables() == []


def test_failure_leaves_the_database_as_it_was(fresh_db, tmp_path):
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    path = root / 'dashboard' / 'alembic' / 'versions' / '004_add_index.py'
    text = path.read_text()
    head = 'def upgrade() -> None:' if 'def upgrade() -> None:' in text else 'def upgrade():'
    path.write_text(text.replace(head, head + '\n    op.execute("SELECT no_such_function_004()")', 1))
    svc = dashboard(fresh_db.password_url, root=str(root))
    assert run(svc, target='002')['applied'] == ['001', '002']
    fresh_db.execute("INSERT INTO users (id, email, username, created_at) VALUES "
                     "(1, 'a@example.org', 'a', '2024-01-01'), (2, 'b@example.org', 'b', '2025-06-01')")
    before = fresh_db.snapshot()
    log = str(tmp_path / 'audit.jsonl')
    result = run(svc, audit_log=log)
    assert result['failed'] is True and result['changed'] is False
    assert '[SQL: SELECT no_such_function_004()]' in result['msg']  # the statement
    assert 'alembic -c alembic.ini upgrade head failed' in result['msg']
    assert result['applied'] == [] and result['from_revision'] == '002' and result['to_revision'] == '002'
    assert fresh_db.snapshot() == before
    assert fresh_db.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0] == 0
    record = audit.read_records(log)[-1]
    assert record['outcome'] == 'failed' and 'no_such_function_004' in record['error']
    assert fresh_db.password not in open(log).read()


def test_unknown_revision_target(fresh_db):
    result = run(dashboard(fresh_db.password_url), target='999')
    assert result['failed'] is True and '999' in result['msg'] and 'nothing was changed' in result['msg']
    assert fresh_db.tables() == []


@pytest.mark.parametrize('url_form', ['postgresql+psycopg2://', 'postgres://'])
def test_url_forms_reach_env_py(fresh_db, url_form):
    url = fresh_db.password_url.replace('postgresql://', url_form)
    result = run(dashboard(url))
    assert not result.get('failed'), result.get('msg')
    assert result['applied'] == DASHBOARD and cli_current(fresh_db) == ['006']


def test_partial_failure_reports_what_really_happened(fresh_db, tmp_path):
    """transaction_per_migration: 001-003 commit, 004 fails; the result and the audit say exactly that."""
    root = tmp_path / 'services'
    shutil.copytree(SERVICES, str(root))
    ini = root / 'dashboard' / 'alembic.ini'
    ini.write_text(ini.read_text().replace('[alembic]\n', '[alembic]\ntransaction_per_migration = true\n', 1))
    path = root / 'dashboard' / 'alembic' / 'versions' / '004_add_index.py'
    text = path.read_text()
    path.write_text(text.replace('def upgrade() -> None:', 'def upgrade() -> None:\n'
                                 '    op.execute("SELECT no_such_function_004()")', 1))
    log = str(tmp_path / 'audit.jsonl')
    result = run(dashboard(fresh_db.password_url, root=str(root)), audit_log=log)
    assert result['failed'] is True and result['changed'] is True
    assert result['applied'] == ['001', '002', '003'] and result['to_revision'] == '003'
    assert 'applied by this run: 001, 002, 003' in result['msg']
    assert 'the database is at 003' in result['msg'] and 'target=base' in result['msg']
    assert cli_current(fresh_db, root=str(root)) == ['003']
    record = audit.read_records(log)[-1]
    assert record['outcome'] == 'failed' and record['applied'] == ['001', '002', '003'] and record['to'] == '003'
    assert fresh_db.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0] == 0
