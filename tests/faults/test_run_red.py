"""Red-team cancels of the one-task run: Ctrl-C (SIGINT to the process group) and SIGTERM (AWX, Semaphore) while
the run task's apply waits for its lock, or as the worker starts it (see test_run_cancel); SIGKILL while a failed
service goes back."""

import json
import os
import signal
import threading
import time

import pytest

from harness.faults import marked_processes, wait_for

from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key
from faults.test_run_cancel import _module_waits
from faults.test_run_cancel import test_a_killed_controller_ends_the_run_task_and_nothing_runs_after_it as _cancel

pytestmark = pytest.mark.peer


@pytest.mark.parametrize('when', ['waiting', 'starting'])
@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_a_cancelled_run_task_stops_and_nothing_runs_after_it(lab, signame, when):
    _cancel(lab, signame, when)


def _slow_broken_stream_bot(lab):
    """A migration of stream-bot that holds its lock for a few seconds, then fails (nothing of it stays)."""
    folder = os.path.join(lab.services_dir, 'stream-bot', 'migrations')
    journal_path = os.path.join(folder, 'meta', '_journal.json')
    with open(journal_path) as fh:
        journal = json.load(fh)
    last = journal['entries'][-1]
    tag = '0005_slow_broken'
    journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=tag))
    with open(journal_path, 'w') as fh:
        json.dump(journal, fh, indent=2)
    with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
        fh.write('SELECT pg_sleep(4);\n--> statement-breakpoint\n'
                 'UPDATE "users" SET "display_name" = "no_such_column";\n')


def test_a_controller_killed_while_it_goes_back_restores_nothing_and_stops(lab):
    """SIGKILL to the process group of ansible-playbook while the go-back of stream-bot waits for its lock (the test
    took it as the failed apply let it go): the go-back stops, no restore, no audit record of the role."""
    _slow_broken_stream_bot(lab)
    holder = lab.dbs['stream-bot'].conn()
    got = threading.Event()

    def take_the_lock():
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('stream-bot'))
        got.set()

    try:
        run = lab.spawn(tags='stream-bot', migrate_all_lock_wait=300,
                        migrate_all_transaction='each')  # the first five stay: going back is needed
        assert wait_for(lambda: 'stream-bot: moving it' in open(run.out.name).read() or not run.running(), 300)
        time.sleep(2)  # the apply holds the lock (its first statement sleeps): the test waits right behind it
        taker = threading.Thread(target=take_the_lock, daemon=True)
        taker.start()
        assert got.wait(60), 'the lock was never released'
        assert wait_for(lambda: 'going back' in open(run.out.name).read() or not run.running(), 120)
        assert run.running(), open(run.out.name).read()[-3000:]
        time.sleep(2)  # the go-back waits for the lock now
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.wait(60)
        gone = wait_for(lambda: not marked_processes(lab.marker), 30)
        left = marked_processes(lab.marker)
    finally:
        holder.close()
    assert gone, 'processes of the run outlived it: %s' % (left,)
    time.sleep(3)
    records = lab.audit() if os.path.exists(lab.audit_log) else []
    assert not [r for r in records if r.get('source') == 'role'], records
    applies = [(r.get('action'), r.get('outcome')) for r in records if r.get('source') != 'role']
    assert applies[-1] == ('rollback', 'interrupted') or applies[-1][0] == 'apply', applies
    assert not [r for r in records if r.get('restored')], records


def test_a_module_killed_on_its_own_says_how_it_ended(lab):
    """The apply module of the dashboard dies (SIGKILL, as the OOM killer does) while it waits for its lock; the
    controller lives on. The failure says how the module ended (its exit status), not only "MODULE FAILURE ... see
    stdout/stderr", which the run task does not show."""
    holder = lab.dbs['dashboard'].conn()
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('dashboard'))
        run = lab.spawn(tags='dashboard', migrate_all_lock_wait=20)
        assert wait_for(lambda: _module_waits(lab) or not run.running(), 300)
        time.sleep(1)
        pids = [pid for pid, cmd in marked_processes(lab.marker).items()
                if 'AnsiballZ_homelab_migration_apply' in cmd and 'python' in cmd.split(' ')[0]]
        assert pids, marked_processes(lab.marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        run.wait(300)
    finally:
        holder.close()
    assert run.returncode != 0
    record = [r for r in lab.audit() if r.get('source') == 'role' and r.get('service') == 'dashboard'][-1]
    assert record['outcome'] == 'failed', record
    assert 'exit status' in record['error'] and 'killed by signal 9' in record['error'], record['error']
    assert lab.canary not in json.dumps(record)
