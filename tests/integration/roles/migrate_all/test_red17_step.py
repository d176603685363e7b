"""Red team r17: the role's run task backs up, migrates and records each service in one homelab_migration_apply run
(backup and record options). Through the real ansible-playbook on real PostgreSQL with the example homelab."""

import json
import os

import pytest

from integration.roles.migrate_all.test_role import homelab  # noqa: F401  # pylint: disable=unused-import
from integration.roles.migrate_all.test_run_red import _texts

pytestmark = pytest.mark.peer


def test_a_failed_in_module_backup_at_vvvv_migrates_nothing_leaks_nothing_and_records_once(homelab):  # noqa: F811
    os.makedirs(os.path.dirname(homelab.backup_dir), exist_ok=True)
    with open(homelab.backup_dir, 'w') as fh:
        fh.write('a file where the backup directory should be')
    before = homelab.snapshot(['stream-bot'])
    proc = homelab.play(tags='stream-bot', verbosity=4)
    assert proc.returncode != 0
    assert homelab.canary not in proc.output and homelab.canary not in _texts(homelab)
    assert homelab.snapshot(['stream-bot']) == before
    records = [r for r in homelab.role_records() if r['service'] == 'stream-bot']
    assert len(records) == 1, records
    rec = records[0]
    assert rec['outcome'] == 'failed' and rec['backup'] is None and rec['recovery'] == 'nothing was changed', rec
    assert 'backing up' in rec['error'], rec['error']
    assert json.dumps(rec).count(homelab.backup_dir) <= 2
