"""README "Using it in your homelab" works as written: its commands, extracted from the README, run one by one
with bash in a fresh copy of the repository against a throwaway PostgreSQL. The first line (`make demo`: set-up
and a throwaway server that writes .demo/vars.yml) is replaced by the test harness's own server and a
.demo/vars.yml with the same keys; every other line runs verbatim."""

import json
import os
import re
import shutil
import subprocess

import pytest

from harness.ansible import REPO
from harness.pg import Database

from ansible_collections.homelab.migrations.plugins.module_utils.audit import read_records

pytestmark = pytest.mark.peer

SECTION = '### Using it in your homelab'


def readme_commands():
    with open(os.path.join(REPO, 'README.md')) as fh:
        text = fh.read()
    section = text[text.index(SECTION):]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith('#')]


def _copy_repo(dest):
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split('\0')
    for rel in files:
        src = os.path.join(REPO, rel)
        if not rel or not os.path.isfile(src) or os.path.islink(src):
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
    # what `make setup` leaves: the virtualenv (shared, it is large)
    os.symlink(os.path.realpath(os.path.join(REPO, '.venv')), os.path.join(dest, '.venv'))


def test_readme_commands_run_as_written(pg, tmp_path):
    commands = readme_commands()
    assert commands[0].split('#')[0].strip() == 'make demo', commands
    assert any(c.startswith('source .venv/bin/activate') for c in commands)
    clone = str(tmp_path / 'clone')
    _copy_repo(clone)
    dbs = dict((key, Database(pg, pg.create_database())) for key in ('dashboard', 'stream_bot', 'discord_bot'))
    try:
        demo = os.path.join(clone, '.demo')
        os.makedirs(demo, mode=0o700)
        # the keys scripts/demo.sh writes, pointing at this test's server and databases
        ev = {'homelab_demo_pg_host': pg.host, 'homelab_demo_pg_port': pg.port, 'homelab_demo_pg_user': 'homelab',
              'homelab_demo_pg_password': pg.password, 'migrate_all_backup_dir': demo + '/backups',
              'migrate_all_audit_log': demo + '/audit.log'}
        ev.update(('homelab_demo_db_' + key, db.name) for key, db in dbs.items())
        with open(os.path.join(demo, 'vars.yml'), 'w') as fh:
            json.dump(ev, fh)
        echoed = ['echo "+ %s"\n%s' % (c.replace('"', '\\"').replace('$', '\\$'), c) for c in commands[1:]]
        script = '\n'.join(['set -euo pipefail'] + echoed)
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(('ANSIBLE_', 'VIRTUAL_ENV')))
        env['PATH'] = '/usr/local/bin:/usr/bin:/bin'         # a fresh shell: no .venv on PATH
        env['ANSIBLE_NOCOLOR'] = '1'
        proc = subprocess.run(['bash', '-c', script], cwd=clone, env=env, check=False, capture_output=True,
                              text=True, timeout=1200, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        assert pg.password not in out
        assert os.listdir(os.path.join(clone, 'collections', 'ansible_collections', 'homelab', 'migrations'))
        assert 'CREATE TABLE' in out                       # --check --diff showed the SQL
        records = read_records(os.path.join(demo, 'audit.log'))
        outcomes = [(r['service'], r['outcome'], r['action']) for r in records if r.get('source') == 'role']
        assert ('dashboard', 'success', 'apply') in outcomes and ('discord-bot', 'success', 'apply') in outcomes
        assert ('stream-bot', 'success', 'rollback') in outcomes, outcomes
        assert os.listdir(os.path.join(demo, 'backups'))
    finally:
        for db in dbs.values():
            pg.drop_database(db.name)
