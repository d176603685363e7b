"""Red team r17 (red2): the apply's journal (service_step.note) read back after a kill
(recovery.migrate_all_journal_result).

The journal is written best effort (service_step._noted swallows OSError), but the recovery reads a MISSING line as
proof that the step did not happen ("no apply line = the apply never started (untouched)"). A journal line that could
not be written (the remote temporary directory's file system full, as a backup that just filled the disk leaves it)
is therefore read as "nothing was done": an apply that migrated is recorded as untouched, with no backup to restore.
"""

import glob
import os
import signal
import subprocess
import time

import pytest

from harness.faults import marked_processes, wait_for

from test_red17_step import _apply_pids, _big_stream_bot, _dump_waits, _role_lines, _sleeping, _slow_stream_bot

pytestmark = pytest.mark.peer


class _SmallTmp(object):
    """A 64 MiB tmpfs used as ansible's remote_tmp (the task's private temporary directory, where the journal is)."""

    def __init__(self, tmp_path):
        self.root = str(tmp_path / 'remote_tmp')
        os.makedirs(self.root)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', self.root], check=True)
        self.filler = os.path.join(self.root, 'filler')

    def journals(self, service):
        return glob.glob(os.path.join(self.root, '*', 'homelab-journal-%s.jsonl' % service))

    def fill(self):
        """Take every free byte (ENOSPC for the next write)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b'\0' * 65536)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b'\0')
        except OSError:
            pass
        os.close(fd)

    def page_align(self, path, room=0):
        """Blank lines (the reader skips them) up to ``room`` bytes before the end of the journal's page: tmpfs then
        needs a new page for the next line past those bytes, and a full tmpfs refuses it, as a full disk refuses a
        file's next block."""
        size = os.path.getsize(path)
        pad = (-size - room) % 4096
        with open(path, 'a') as fh:
            fh.write('\n' * pad)

    def free(self):
        try:
            os.unlink(self.filler)
        except OSError:
            pass

    def close(self):
        subprocess.run(['umount', '-l', self.root], check=False)


@pytest.fixture
def small_tmp(tmp_path):
    tmp = _SmallTmp(tmp_path)
    yield tmp
    tmp.close()


def _journal_text(small_tmp):
    out = []
    for path in small_tmp.journals('stream-bot'):
        with open(path) as fh:
            out.append([line for line in fh.read().splitlines() if line.strip()])
    return out


def test_a_journal_that_could_not_be_written_is_read_as_an_untouched_database(lab, small_tmp):
    """The start line is written; then the file system of the remote temporary directory is full (ENOSPC): the
    backup and apply lines are lost silently, the backup (elsewhere) is published and the apply migrates (one
    transaction per migration: 0002..0004 commit). SIGKILL (OOM killer) during 0005. The journal holds only
    ``start``, and the run task concludes that the backup failed and nothing was changed: the role records
    "nothing was changed"/untouched for a database that was migrated, and neither goes back nor restores."""
    lab.move('stream-bot', '0001_add_giveaways')
    _slow_stream_bot(lab, seconds=30)
    before = lab.snapshot(['stream-bot'])
    locker = lab.dbs['stream-bot'].conn()
    run = None
    try:
        locker.cursor().execute('BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        run = lab.spawn(tags='stream-bot', migrate_all_transaction='each', migrate_all_backup_lock_wait_timeout=120,
                        env={'ANSIBLE_REMOTE_TMP': small_tmp.root})
        assert wait_for(lambda: _dump_waits(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        paths = small_tmp.journals('stream-bot')
        assert paths, os.listdir(small_tmp.root)
        small_tmp.page_align(paths[0])
        small_tmp.fill()
        locker.cursor().execute('ROLLBACK')
        assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        journal = _journal_text(small_tmp)
        pids = _apply_pids(lab)
        assert pids, marked_processes(lab.marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        small_tmp.free()  # the disk has room again for the run task's next steps
        run.wait(300)
    finally:
        small_tmp.free()
        try:
            locker.cursor().execute('ROLLBACK')
        except Exception:  # noqa: BLE001  # already rolled back
            pass
        locker.close()
        if run is not None and run.running():
            run.kill()
    assert lab.canary not in run.output
    applied = lab.drizzle_applied('stream-bot')
    changed = lab.snapshot(['stream-bot']) != before
    records = [r for r in lab.role_records() if r.get('service') == 'stream-bot']
    assert len(records) == 1, records
    rec = records[0]
    facts = (journal, applied, changed, lab.backups('stream-bot'),
             dict((k, rec.get(k)) for k in ('outcome', 'untouched', 'recovery', 'backup', 'restored', 'error')))
    # what the record says must be true: it may not call a migrated database untouched
    if changed:
        assert rec.get('untouched') is not True and rec.get('recovery') != 'nothing was changed', facts
    # and the backup that was published before the apply is known, so it could be restored
    assert rec.get('backup'), facts


def test_a_record_line_that_could_not_be_written_gives_two_records_and_undoes_a_success(lab, small_tmp):
    """The apply line is written; then the remote temporary directory's file system is full. The module migrates,
    writes the role's record (success) to the audit log (another file system) and loses the journal's ``record``
    line (ENOSPC, swallowed). SIGKILL before it answers (its result is large): the journal says the apply ran and
    nothing was recorded, so the run task goes back and records a failure too: two role records for one service,
    one of them false."""
    _big_stream_bot(lab)
    run = lab.spawn(tags='stream-bot', env={'ANSIBLE_REMOTE_TMP': small_tmp.root})
    killed = False
    try:
        assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        paths = small_tmp.journals('stream-bot')
        assert paths, os.listdir(small_tmp.root)
        small_tmp.page_align(paths[0])
        small_tmp.fill()
        pids = _apply_pids(lab)
        assert pids, marked_processes(lab.marker)
        deadline = time.monotonic() + 300
        while run.running() and time.monotonic() < deadline:
            if _role_lines(lab.audit_log, 'stream-bot'):
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed = True
                    except ProcessLookupError:
                        pass
                break
            time.sleep(0.0005)
        journal = _journal_text(small_tmp)
        small_tmp.free()
        run.wait(300)
    finally:
        small_tmp.free()
        if run.running():
            run.kill()
    assert killed, 'the module answered before the kill'
    assert lab.canary not in run.output
    records = _role_lines(lab.audit_log, 'stream-bot')
    applied = lab.drizzle_applied('stream-bot')
    assert len(records) == 1, (journal, applied, [(r['outcome'], r.get('recovery')) for r in records])
    if records[0]['outcome'] == 'success':
        assert applied and applied[-1] == '0005_big_backfill', (records[0], applied)


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
    try:
        assert wait_for(lambda: _dashboard_sleeping(lab) or not run.running(), 300), \
            open(run.out.name).read()[-3000:]
        assert run.running()
        pids = _module_pids(lab, pipelining)
        assert len(pids) == 1, marked_processes(lab.marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        run.wait(300)
    finally:
        if run.running():
            run.kill()
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
    try:
        assert wait_for(lambda: _dashboard_sleeping(lab) or not run.running(), 300), \
            open(run.out.name).read()[-3000:]
        assert run.running()
        pids = _apply_pids(lab)
        assert pids, marked_processes(lab.marker)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        run.wait(300)
    finally:
        if run.running():
            run.kill()
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


def test_a_short_journal_write_garbles_the_apply_line_into_a_false_untouched(lab, small_tmp):
    """A full file system gives a SHORT write, not an error: os.write() of the ``backup`` line writes only what fits
    (service_step.note never checks the count), and no OSError is raised. Space comes back a moment later (the
    backup's pruning, another process's cleanup; here the test frees it while strace holds the next journal open
    3 s), and the ``apply`` line is appended, without error, to the cut backup line: one line that is not JSON,
    which the reader skips. The journal then proves nothing past ``start``, and the run task says the backup failed
    and nothing was changed, although every journal write after ``start`` "succeeded" and the apply migrated."""
    lab.move('stream-bot', '0001_add_giveaways')
    _slow_stream_bot(lab, seconds=30)
    before = lab.snapshot(['stream-bot'])
    locker = lab.dbs['stream-bot'].conn()
    run = tracer = None
    try:
        locker.cursor().execute('BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        run = lab.spawn(tags='stream-bot', migrate_all_transaction='each', migrate_all_backup_lock_wait_timeout=120,
                        env={'ANSIBLE_REMOTE_TMP': small_tmp.root})
        assert wait_for(lambda: _dump_waits(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        paths = small_tmp.journals('stream-bot')
        assert paths, os.listdir(small_tmp.root)
        pids = _apply_pids(lab)
        assert len(pids) == 1, marked_processes(lab.marker)
        # the 2nd journal open from now on (the apply line's; the 1st is the backup line's) is held 3 s
        tracer = subprocess.Popen(['strace', '-qq', '-p', str(pids[0]), '-P', paths[0], '-e', 'trace=openat',
                                   '-e', 'inject=openat:delay_enter=3000000:when=2', '-o', '/dev/null'])
        time.sleep(1)
        small_tmp.page_align(paths[0], room=40)
        small_tmp.fill()
        locker.cursor().execute('ROLLBACK')
        assert wait_for(lambda: os.path.getsize(paths[0]) % 4096 == 0 or not run.running(), 120)
        small_tmp.free()
        assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), open(run.out.name).read()[-3000:]
        journal = _journal_text(small_tmp)
        with open(paths[0]) as fh:
            raw = [line[:60] + '...' + line[-40:] for line in fh.read().splitlines() if line.strip()]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        run.wait(300)
    finally:
        if tracer is not None:
            tracer.kill()
            tracer.wait()
        small_tmp.free()
        try:
            locker.cursor().execute('ROLLBACK')
        except Exception:  # noqa: BLE001  # already rolled back
            pass
        locker.close()
        if run is not None and run.running():
            run.kill()
    assert lab.canary not in run.output
    applied = lab.drizzle_applied('stream-bot')
    changed = lab.snapshot(['stream-bot']) != before
    records = [r for r in lab.role_records() if r.get('service') == 'stream-bot']
    assert len(records) == 1, records
    rec = records[0]
    facts = (raw, journal, applied, changed, lab.backups('stream-bot'),
             dict((k, rec.get(k)) for k in ('outcome', 'untouched', 'recovery', 'backup', 'restored', 'error')))
    if changed:
        assert rec.get('untouched') is not True and rec.get('recovery') != 'nothing was changed', facts
    assert rec.get('backup'), facts
