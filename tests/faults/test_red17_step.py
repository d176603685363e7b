"""Red team r17 (one module run per service: homelab_migration_apply with ``backup`` and ``record``).

The role's run task used to take the backup in its own module run, so the action knew the backup's path before the
apply started. Now the backup's result comes back only inside the apply's result: when that module dies (SIGKILL,
as the OOM killer does) after its backup was written and verified, the action no longer knows the backup and cannot
restore it, and the role's record says there was none.
"""

import contextlib
import json
import os
import signal
import time

import pytest

from harness.faults import kill_marked, marked_processes, wait_for

pytestmark = pytest.mark.peer


def _slow_stream_bot(lab, seconds=6):
    """One more stream-bot migration that sleeps ``seconds`` (a long backfill) and then succeeds."""
    lab.add_migration('stream-bot', '0005_slow_backfill', 'SELECT pg_sleep(%d);\n' % seconds)


def _sleeping(lab):
    db = lab.dbs['stream-bot']
    rows = db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND query LIKE '%%pg_sleep%%'", (db.name,))
    return rows[0][0] > 0


def _apply_pids(lab):
    return [pid for pid, cmd in marked_processes(lab.marker).items()
            if 'AnsiballZ_homelab_migration_apply' in cmd and 'python' in cmd.split(' ')[0]]


@pytest.mark.parametrize('transaction', ['all', 'each'])
def test_an_apply_killed_after_its_backup_is_restored_from_that_backup(lab, transaction):
    """SIGKILL to stream-bot's apply module while its last migration runs (after the module's backup was written):
    the role must still know that backup (it is on disk, verified), restore it and record it."""
    _slow_stream_bot(lab)
    run = lab.spawn(tags='stream-bot', migrate_all_transaction=transaction)
    run.sigkill_when(lambda: _sleeping(lab), lambda: _apply_pids(lab))
    assert run.returncode != 0
    assert lab.canary not in run.output
    taken = lab.backups('stream-bot')
    assert len(taken) == 1, taken  # the module's backup was written and published before the kill
    records = [r for r in lab.role_records() if r.get('service') == 'stream-bot']
    assert len(records) == 1, records
    record = records[0]
    assert record['outcome'] == 'failed', record
    # the role knows the backup it took and restored it (as it did when the backup was a module run of its own)
    assert record['backup'] == os.path.join(lab.backup_dir, taken[0]), record
    assert 'NOT RECOVERED' not in (record.get('recovery') or ''), record['recovery']
    assert record.get('restored') is True, record


def _big_stream_bot(lab, statements=150, size=60000):
    """One more stream-bot migration: a pause (time to find the module), then many long statements (the module
    reports every statement it sent in ``queries``: a large result, so the module takes a moment to answer after
    its work is done)."""
    filler = 'x' * size
    body = ['SELECT pg_sleep(3);'] + ["SELECT length('%s%d');" % (filler, n) for n in range(statements)]
    lab.add_migration('stream-bot', '0005_big_backfill', '\n--> statement-breakpoint\n'.join(body) + '\n',
                      down_sql='SELECT 1;\n')


def _role_lines(path, service):
    try:
        with open(path) as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return []
    return [r for r in lines if r.get('source') == 'role' and r.get('service') == service]


def test_an_apply_killed_after_it_wrote_the_role_record_leaves_one_true_record(lab):
    """The apply module writes the role's record (success) itself, then answers. SIGKILL (OOM killer, a kill by an
    operator) in between: the action sees a failed module, goes back and records a failure too. The audit log then
    holds two role records for one service in one run, one of them (success) false."""
    _big_stream_bot(lab)
    run = lab.spawn(tags='stream-bot')
    killed_after_record = False
    try:
        assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), 'the migration never ran'
        pids = _apply_pids(lab)
        assert pids, marked_processes(lab.marker)
        deadline = time.monotonic() + 300
        size = -1
        while run.running() and time.monotonic() < deadline:
            try:
                now = os.stat(lab.audit_log).st_size
            except OSError:
                now = -1
            if now != size:
                size = now
                if _role_lines(lab.audit_log, 'stream-bot'):
                    for pid in pids:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            killed_after_record = True
                        except ProcessLookupError:
                            pass
                    break
            time.sleep(0.0005)
        run.wait(300)
    finally:
        if run.running():
            run.kill()
    assert lab.canary not in run.output
    # (when the record is written by a module run of its own, as before, the apply has answered by then and the
    # kill finds no process: killed_after_record stays False and the run ends normally)
    records = _role_lines(lab.audit_log, 'stream-bot')
    assert len(records) == 1, (killed_after_record, [(r['outcome'], r.get('recovery')) for r in records])
    applied = lab.drizzle_applied('stream-bot')
    if records[0]['outcome'] == 'success':
        assert applied and applied[-1] == '0005_big_backfill', (records[0], applied)


def _dump_waits(lab):
    db = lab.dbs['stream-bot']
    return db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND wait_event_type = 'Lock'", (db.name,))[0][0] > 0


@contextlib.contextmanager
def _backup_waiting_for_a_lock(lab):
    """Yields a run (stream-bot only) whose backup's pg_dump waits for a table lock an application holds (ACCESS
    EXCLUSIVE on users). The lock is released as the block ends; the run goes on then, unless the block failed:
    then it is killed."""
    locker = lab.dbs['stream-bot'].conn()
    try:
        locker.cursor().execute('BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        run = lab.spawn(tags='stream-bot', migrate_all_backup_lock_wait_timeout=120)
        try:
            assert wait_for(lambda: _dump_waits(lab) or not run.running(), 300), 'pg_dump never waited'
            assert run.running(), run.tail()
            time.sleep(1)
            yield run
        except BaseException:
            if run.running():
                run.kill()
            raise
    finally:
        locker.cursor().execute('ROLLBACK')
        locker.close()


@pytest.mark.parametrize('signame,group', [('SIGINT', True), ('SIGTERM', False), ('SIGHUP', True), ('SIGKILL', True)],
                         ids=['ctrl-c', 'awx-sigterm', 'hangup', 'sigkill'])
def test_a_cancel_while_the_run_tasks_backup_waits_migrates_nothing_ever(lab, signame, group):
    """The role's backup (now inside the apply module) waits for a table lock an application holds; the job is
    cancelled. Nothing is migrated, then or after the lock goes, no backup is published, no role record claims an
    outcome, and no process of the run is left."""
    lab.move('stream-bot', '0001_add_giveaways')
    before = lab.snapshot(['stream-bot'])
    with _backup_waiting_for_a_lock(lab) as run:
        try:
            sent = time.monotonic()
            run.send(signame, group)
            gone = wait_for(lambda: not run.running() and not marked_processes(lab.marker), 60)
            took = time.monotonic() - sent
            left = marked_processes(lab.marker)
        finally:
            kill_marked(lab.marker)
            if run.running():
                run.kill()
            else:
                run.wait(10)
    assert gone, 'still there %.0f s after %s: %s' % (took, signame, left)
    time.sleep(4)  # a module or worker that went on would migrate now
    assert lab.snapshot(['stream-bot']) == before, 'stream-bot changed after the cancel'
    assert lab.backups('stream-bot') == [], lab.backups('stream-bot')
    records = lab.audit() if os.path.exists(lab.audit_log) else []
    assert not [r for r in records if r.get('source') == 'role'], records
    assert [r.get('outcome') for r in records if r.get('service') == 'stream-bot'] in ([], ['interrupted']), records
    assert lab.canary not in run.output


def _module_pids(lab, module):
    return [pid for pid, cmd in marked_processes(lab.marker).items()
            if 'AnsiballZ_%s' % module in cmd and 'python' in cmd.split(' ')[0]]


def test_a_module_killed_during_its_backup_is_recorded_as_nothing_changed(lab):
    """SIGKILL (the OOM killer) to the module that takes stream-bot's backup while its pg_dump waits for a table
    lock an application holds: nothing of the database was touched. The role's record must say so ("nothing was
    changed", untouched), as it did when the backup was a module run of its own, not "NOT RECOVERED ... restore by
    hand" after a needless go-back."""
    lab.move('stream-bot', '0001_add_giveaways')
    before = lab.snapshot(['stream-bot'])
    with _backup_waiting_for_a_lock(lab) as run:
        pids = _module_pids(lab, 'homelab_migration_apply') + _module_pids(lab, 'homelab_pg_backup')
        assert pids, marked_processes(lab.marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    run.wait(300)  # (killed if it outlives that)
    assert run.returncode != 0
    assert lab.canary not in run.output
    assert lab.snapshot(['stream-bot']) == before
    records = [r for r in lab.role_records() if r.get('service') == 'stream-bot']
    assert len(records) == 1, records
    rec = records[0]
    assert rec['outcome'] == 'failed', rec
    assert 'NOT RECOVERED' not in (rec.get('recovery') or ''), rec['recovery']
    assert rec.get('untouched') is True and rec['recovery'] == 'nothing was changed', rec


TRIALS = 4


def _published(lab):
    try:
        return [n for n in os.listdir(lab.backup_dir) if n.startswith('stream-bot_') and not n.endswith('.sha256')]
    except OSError:
        return []


@pytest.mark.parametrize('signame,group', [('SIGKILL', True), ('SIGINT', True), ('SIGTERM', False), ('SIGHUP', True)],
                         ids=['kill-9', 'ctrl-c', 'awx-sigterm', 'hangup'])
def test_ansible_playbook_killed_as_the_backup_is_published_migrates_nothing(lab, signame, group):
    """ansible-playbook dies (SIGKILL to its process group: kill -9, the OOM killer, a CI runner's cancel) the moment
    the run task's backup of stream-bot is published, before its apply starts. When the backup was a module run of
    its own the run task checked right after it that the controller was gone and started no apply. Now the apply
    follows in the same module process, which notices the controller's death only at its watcher's next poll (up to
    half a second): a quick apply commits after the job was cancelled. Tried TRIALS times; any migration counts."""
    migrated = []
    for trial in range(TRIALS):
        lab.reset()
        lab.move('stream-bot', '0001_add_giveaways')
        before = lab.snapshot(['stream-bot'])
        run = lab.spawn(tags='stream-bot')
        try:
            deadline = time.monotonic() + 300
            while run.running() and time.monotonic() < deadline and not _published(lab):
                time.sleep(0.001)
            assert run.running(), 'the run ended before its backup was published'
            run.send(signame, group)
            run.wait(60)
            gone = wait_for(lambda: not marked_processes(lab.marker), 30)
        finally:
            kill_marked(lab.marker)
        assert gone, marked_processes(lab.marker)
        time.sleep(2)
        if lab.snapshot(['stream-bot']) != before:
            migrated.append((trial, lab.drizzle_applied('stream-bot'),
                             [(r.get('action'), r.get('outcome')) for r in lab.audit()]))
    assert not migrated, 'stream-bot was migrated after ansible-playbook was killed: %s' % migrated
