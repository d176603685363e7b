"""Red team r17 (red2): the apply's journal (service_step.note) read back after a kill
(recovery.migrate_all_journal_result): a kill during the alembic child, with and without a backup, and a kill between
the role's record reaching the audit log and the journal's ``recorded`` line (the run task finds the record in the log
and writes no second one). The journal lines a full disk could lose are covered in-process by
tests/integration/plugins/module_utils/test_service_step_journal.py.
"""

import glob
import os
import signal
import subprocess
import time

import pytest

from harness.faults import marked_processes, wait_for

from test_red17_step import _apply_pids, _big_stream_bot, _role_lines, _sleeping

pytestmark = pytest.mark.peer


def _module_pids(lab, pipelining):
    """The apply module's process: AnsiballZ_homelab_migration_apply.py, or with pipelining a bare interpreter fed
    on its stdin (only the apply module runs while dashboard's migration sleeps)."""
    if not pipelining:
        return _apply_pids(lab)
    return [pid for pid, cmd in marked_processes(lab.marker).items()
            if ' ' not in cmd.strip() and os.path.basename(cmd.strip()).startswith('python')]


def _slow_dashboard(lab, seconds=60):
    """dashboard's last revision (006) sleeps after its DDL: time to kill the module during the alembic child's run."""
    path = os.path.join(lab.services_dir, 'dashboard', 'alembic', 'versions', '006_create_service_status.py')
    with open(path) as fh:
        text = fh.read()
    head = 'def upgrade() -> None:\n'
    text = text.replace(head, head + '    op.execute("SELECT pg_sleep(%d)")\n' % seconds, 1)
    assert 'pg_sleep(%d)' % seconds in text
    with open(path, 'w') as fh:
        fh.write(text)


def _dashboard_sleeping(lab):
    db = lab.dbs['dashboard']
    return db.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND query LIKE '%%pg_sleep%%' AND state = 'active'", (db.name,))[0][0] > 0


@pytest.mark.parametrize('transaction,pipelining', [('all', False), ('each', False), ('each', True)],
                         ids=['all', 'each', 'each-pipelining'])
def test_an_apply_killed_during_the_alembic_child_is_restored_from_its_backup(lab, transaction, pipelining):
    """SIGKILL to dashboard's apply module while its alembic child runs 006 (after 002..005): the journal has
    ``start``, ``backup`` and ``apply``; the role must know the backup, take dashboard back (or restore it) and
    record one failure that is recovered, with no alembic child left."""
    lab.move('dashboard', '001')
    _slow_dashboard(lab)
    before = lab.snapshot(['dashboard'])
    run = lab.spawn(tags='dashboard', migrate_all_transaction=transaction,
                    env={'ANSIBLE_PIPELINING': 'True'} if pipelining else None)
    killed = run.sigkill_when(lambda: _dashboard_sleeping(lab), lambda: _module_pids(lab, pipelining))
    assert len(killed) == 1, killed  # the apply module alone
    assert lab.canary not in run.output
    assert wait_for(lambda: not _dashboard_sleeping(lab), 30), 'the alembic child lives on'
    records = [r for r in lab.role_records() if r.get('service') == 'dashboard']
    assert len(records) == 1, records
    rec = records[0]
    facts = dict((k, rec.get(k)) for k in ('outcome', 'untouched', 'recovery', 'backup', 'restored', 'to', 'error'))
    assert rec['outcome'] == 'failed', facts
    taken = lab.backups('dashboard')
    assert len(taken) == 1 and rec['backup'] == os.path.join(lab.backup_dir, taken[0]), (taken, facts)
    assert 'NOT RECOVERED' not in (rec.get('recovery') or ''), facts
    assert lab.snapshot(['dashboard']) == before, facts


@pytest.mark.parametrize('transaction', ['all', 'each'])
def test_an_apply_killed_during_the_alembic_child_without_a_backup_is_taken_back(lab, transaction):
    """The same kill from an empty database (backup auto: nothing to back up, no backup): the journal's ``backup``
    line holds a result without a path. The role must not claim a backup or "untouched"; it takes dashboard back to
    base and records one failure, recovered (schema as before)."""
    _slow_dashboard(lab)
    before = lab.snapshot(['dashboard'])
    run = lab.spawn(tags='dashboard', migrate_all_transaction=transaction)
    run.sigkill_when(lambda: _dashboard_sleeping(lab), lambda: _apply_pids(lab))
    assert lab.canary not in run.output
    assert wait_for(lambda: not _dashboard_sleeping(lab), 30), 'the alembic child lives on'
    records = [r for r in lab.role_records() if r.get('service') == 'dashboard']
    assert len(records) == 1, records
    rec = records[0]
    facts = dict([(k, rec.get(k)) for k in ('outcome', 'untouched', 'recovery', 'backup', 'restored', 'to', 'error')],
                 backups=lab.backups('dashboard'), heads=lab.alembic_heads_table())
    assert rec['outcome'] == 'failed' and rec.get('untouched') is not True, facts
    assert 'NOT RECOVERED' not in (rec.get('recovery') or ''), facts
    assert lab.snapshot(['dashboard']) == before, facts


def _journal_of(pid, service):
    """The journal path the module ``pid`` was given (homelab-journal-<service>.jsonl under its task's temp dir)."""
    with open('/proc/%d/cmdline' % pid, 'rb') as fh:
        cmd = fh.read().decode('utf-8', 'replace').split('\0')
    for part in cmd:
        folder = os.path.dirname(part)
        if 'ansible-tmp-' in folder:
            return os.path.join(folder, 'homelab-journal-%s.jsonl' % service)
    found = glob.glob(os.path.expanduser('~/.ansible/tmp/ansible-tmp-*/homelab-journal-%s.jsonl' % service))
    return found[0] if len(found) == 1 else None


def test_a_kill_between_the_record_and_its_journal_line_gives_two_records(lab):
    """No disk trouble: the journal's ``record`` line is written AFTER the role's record is appended to the audit
    log. A slow moment between the two (here the journal's open is held 3 s by strace's delay injection, as a
    stalled ~/.ansible/tmp would) and a SIGKILL in it: the journal says the apply ran and recorded nothing, so the
    run task takes the service back (or restores it) and records a failure next to the success."""
    _big_stream_bot(lab)
    run = lab.spawn(tags='stream-bot')
    tracer = None
    killed = False
    try:
        assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        pids = _apply_pids(lab)
        assert len(pids) == 1, marked_processes(lab.marker)
        journal = _journal_of(pids[0], 'stream-bot')
        assert journal and os.path.exists(journal), journal
        tracer = subprocess.Popen(['strace', '-qq', '-f', '-p', str(pids[0]), '-P', journal, '-e', 'trace=openat',
                                   '-e', 'inject=openat:delay_enter=3000000', '-o', '/dev/null'])
        time.sleep(1)
        deadline = time.monotonic() + 300
        while run.running() and time.monotonic() < deadline:
            if _role_lines(lab.audit_log, 'stream-bot'):
                with open(journal) as fh:
                    lines = fh.read().splitlines()
                time.sleep(0.5)  # well inside the 3 s the journal's open is held
                os.kill(pids[0], signal.SIGKILL)
                killed = True
                break
            time.sleep(0.0005)
        run.wait(300)
    finally:
        if tracer is not None:
            tracer.kill()
            tracer.wait()
        if run.running():
            run.kill()
    assert killed, 'the module answered before the kill'
    assert lab.canary not in run.output
    records = _role_lines(lab.audit_log, 'stream-bot')
    applied = lab.drizzle_applied('stream-bot')
    assert len(records) == 1, (lines, applied, [(r['outcome'], r.get('recovery')) for r in records])
    if records[0]['outcome'] == 'success':
        assert applied and applied[-1] == '0005_big_backfill', (records[0], applied)
