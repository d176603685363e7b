"""A cancel cancels between the steps of one task too: the role backs up, migrates and records every service in one
action (homelab_migration_run), which runs in an ansible worker that ansible-core 2.19 starts in a session of its
own. When ansible-playbook dies (SIGKILL, or a hang-up of its terminal), the running module stops (it watches its
ancestors) and the worker must not go on by itself: no going back, no restore, no next service, after the job ended.

Here dashboard's apply waits for its migration lock (held by the test) when ansible-playbook's process group gets
the signal; the lock is released only after the run's processes are gone, so a worker that went on would migrate.
"""

import os
import time

import pytest

from harness.faults import marked_processes, wait_for

from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key

pytestmark = pytest.mark.peer


def _module_waits(lab):
    return any('AnsiballZ_homelab_migration_apply' in cmd for cmd in marked_processes(lab.marker).values())


@pytest.mark.parametrize('when', ['waiting', 'starting'])
@pytest.mark.parametrize('signame', ['SIGKILL', 'SIGHUP'])
def test_a_killed_controller_ends_the_run_task_and_nothing_runs_after_it(lab, signame, when):
    """``waiting``: the apply module waits for the lock; ``starting``: the signal comes as the worker starts it (a
    module started after ansible-playbook died must stop at once: the action names ansible-playbook to it)."""
    before = lab.snapshot()
    holder = lab.dbs['dashboard'].conn()
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('dashboard'))
        run = lab.spawn(migrate_all_lock_wait=300)
        assert wait_for(lambda: 'dashboard: moving it' in open(run.out.name).read() or not run.running(), 300)
        assert run.running(), 'the run ended before its apply'
        if when == 'waiting':
            assert wait_for(lambda: _module_waits(lab), 120), 'the apply module never started'
            time.sleep(1)
        run.send(signame)
        run.wait(60)
        gone = wait_for(lambda: not marked_processes(lab.marker), 30)
        left = marked_processes(lab.marker)
    finally:
        holder.close()
    assert gone, 'processes of the run outlived it: %s' % (left,)
    time.sleep(3)  # a worker that went on would now get the lock
    assert lab.snapshot() == before, 'a database changed after the job ended'
    assert lab.backups('stream-bot') == [] and lab.backups('discord-bot') == [], 'the next service was started'
    records = lab.audit() if os.path.exists(lab.audit_log) else []
    later = [r for r in records if r.get('action') == 'rollback' or r.get('service') in ('stream-bot', 'discord-bot')]
    assert not later, later
    applies = [r for r in records if r.get('source') != 'role']
    assert [r['outcome'] for r in applies] in ([], ['interrupted']), applies
