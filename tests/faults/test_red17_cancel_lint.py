"""Red team (r17): a cancelled apply ends within seconds even where a linter is slow.

Since the apply returns ``status`` (the service's status entry as the run leaves it), it builds that entry after
the migration, pre-flight findings included, and those run squawk (up to 60 s) when it is installed. A cancel
(SIGTERM to ansible-playbook, as AWX/Semaphore send it) while the migration ran: the module rolled back, then ran
squawk on the pending migrations while it still held the service's lock, ignoring further signals, and so outlived
its controller by up to a minute (here: a squawk that takes 40 s). A cancelled run needs no findings: nobody reads
the entry (the role stops at once).
"""

import os
import signal
import stat
import subprocess
import time
import uuid

import pytest

from harness.faults import MARKER_VAR, wait_for
from harness.ansible import ansible_env

from ansible_collections.homelab.migrations.plugins.module_utils.audit import read_records
from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_holder
from faults.test_signals import BOUND, _busy, _play, _reap, _setup, _signal_and_wait

SLOW_SQUAWK = '''#!/bin/sh
# a squawk that is slow once the test says so (the file "slow" beside it)
if [ -e "$(dirname "$0")/slow" ]; then sleep 40; fi
echo '[]'
'''


@pytest.fixture
def slow_squawk(tmp_path):
    folder = tmp_path / 'bin'
    folder.mkdir()
    exe = folder / 'squawk'
    exe.write_text(SLOW_SQUAWK)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(folder)


def test_a_cancel_during_the_migration_does_not_wait_for_the_linter(fresh_db, tmp_path, slow_squawk):
    spec, first, target = _setup('statement', tmp_path, fresh_db)
    audit_log = str(tmp_path / 'audit.log')
    env = ansible_env({MARKER_VAR: uuid.uuid4().hex})
    env['PATH'] = slow_squawk + os.pathsep + env['PATH']
    out = subprocess.run(_play(tmp_path, spec, first, audit_log), env=env, capture_output=True, text=True,
                         timeout=300, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout[-3000:]
    before = fresh_db.snapshot()
    log = open(str(tmp_path / 'play.out'), 'w+')
    proc = subprocess.Popen(_play(tmp_path, spec, target, audit_log), env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: _busy(fresh_db, 'statement'), 120), 'the migration never got busy'
        open(os.path.join(slow_squawk, 'slow'), 'w').close()
        time.sleep(1)
        gone, took, left = _signal_and_wait(proc, fresh_db, env[MARKER_VAR], signal.SIGTERM)
    finally:
        _reap(proc, env[MARKER_VAR])
        log.seek(0)
        output = log.read()
        log.close()
    assert gone, 'still there %.0f s after SIGTERM: sessions %s, processes %s\n%s' % (
        took, left[0], left[1], output[-3000:])
    assert took < BOUND, took
    conn = fresh_db.conn()
    try:
        assert lock_holder(conn, 'bot') is None
    finally:
        conn.close()
    assert fresh_db.snapshot() == before
    assert read_records(audit_log)[-1]['outcome'] == 'interrupted'
