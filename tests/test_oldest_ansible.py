"""The oldest ansible-core the collection claims (meta/runtime.yml: >=2.16) runs the example playbook: check mode
(the status table, pending migrations) and a real run, with the modules on the managed host (localhost) in the same
virtualenv, which holds only meta/ee-requirements.txt besides ansible-core 2.16 (scripts/setup.sh makes it)."""

import json
import os
import subprocess

import pytest
import yaml

from harness.ansible import REPO, ansible_env
from harness.pg import Database

OLDEST = os.path.join(REPO, '.venv-oldest', 'bin')

pytestmark = [pytest.mark.oldest, pytest.mark.peer,
              pytest.mark.skipif(not os.path.exists(os.path.join(OLDEST, 'ansible-playbook')),
                                 reason='.venv-oldest (ansible-core 2.16) is missing: run scripts/setup.sh')]


def test_runtime_claims_2_16():
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as fh:
        assert yaml.safe_load(fh)['requires_ansible'] == '>=2.16.0'


def test_example_playbook_under_ansible_core_2_16(pg, tmp_path):
    version = subprocess.run([os.path.join(OLDEST, 'python'), '-c',
                              'import ansible.release as r; print(r.__version__)'],
                             check=True, capture_output=True, text=True).stdout.strip()
    assert version.startswith('2.16.'), version
    dbs = dict((key, Database(pg, pg.create_database())) for key in ('dashboard', 'stream_bot', 'discord_bot'))
    try:
        ev = {'homelab_demo_pg_host': pg.host, 'homelab_demo_pg_port': pg.port, 'homelab_demo_pg_user': 'homelab',
              'homelab_demo_pg_password': pg.password, 'migrate_all_backup_dir': str(tmp_path / 'backups'),
              'migrate_all_audit_log': str(tmp_path / 'audit.log'), 'migrate_all_confirm': True}
        ev.update(('homelab_demo_db_' + key, db.name) for key, db in dbs.items())
        varsfile = tmp_path / 'vars.json'
        varsfile.write_text(json.dumps(ev))
        os.chmod(str(varsfile), 0o600)
        env = ansible_env({'PATH': OLDEST + os.pathsep + '/usr/bin:/bin'})
        env.pop('ANSIBLE_PYTHON_INTERPRETER', None)        # the inventory's: ansible_playbook_python (2.16's venv)
        argv = [os.path.join(OLDEST, 'ansible-playbook'), os.path.join(REPO, 'playbooks', 'migrate.yml'),
                '-i', os.path.join(REPO, 'examples', 'homelab', 'inventory'), '-e', '@' + str(varsfile)]
        check = subprocess.run(argv + ['--check'], env=env, cwd=str(tmp_path), check=False, capture_output=True,
                               text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert check.returncode == 0, (check.stdout + check.stderr)[-4000:]
        assert 'overall: pending, 14 pending migration(s)' in check.stdout, check.stdout[-3000:]
        assert not os.path.exists(str(tmp_path / 'audit.log'))
        run = subprocess.run(argv, env=env, cwd=str(tmp_path), check=False, capture_output=True, text=True,
                             timeout=600, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        assert dbs['dashboard'].query('SELECT version_num FROM alembic_version') == [('006',)]
        assert pg.password not in check.stdout + run.stdout
    finally:
        for db in dbs.values():
            pg.drop_database(db.name)
