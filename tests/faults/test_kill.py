"""SIGKILL of the whole `ansible-playbook playbooks/migrate.yml` process group at 20 points of a real run.

A real run of the example homelab (three services, from empty databases, backups, audit) is timed
first, noting when each of its tasks started; 20 kill points are then spread over that duration (stratified:
one random point in each twentieth, random.Random(20261124), so the same fractions every time), and each is
anchored to the task it falls in: "N seconds into task K". Anchoring keeps the points where they belong on a
machine whose speed varies (other jobs): a slower step moves the kill point, not the task it hits.
For each point, on fresh databases: start the run, SIGKILL its process group at that point, then check that
nothing is lost (harness.faults.FaultLab.verify:
each service at a revision alembic / drizzle-orm and the collection's status agree on, its schema exactly a
clean run's schema at that revision, tracking rows unique, no lock held, no session or process of the run
left, backups matching their .sha256, the audit log whole), then run the playbook again: it completes, every
service at head, no stale partial backup left, an audit record per service.

Points alternate between migrate_all_transaction=all (the default) and each (a commit per migration, so
kills land between committed migrations too). Two lanes (two homelabs) run side by side to keep the wall
time down; kill points are fractions of a run timed with both lanes busy.
"""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.faults import HEADS, ORDER, FaultLab, last_task, marked_processes, wait_for

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SEED = 20261124
POINTS = 20
LANES = 2


def kill_points(duration, points=POINTS, seed=SEED):
    """One point in each 1/points of ``duration``, seeded: the same fractions on every machine."""
    rng = random.Random(seed)
    return [duration * (i + rng.random()) / points for i in range(points)]


def anchor(starts, point):
    """(task number, seconds into it) of ``point`` seconds into a run whose tasks started at ``starts``."""
    task = max([k for k, start in enumerate(starts) if start <= point], default=-1)
    return task, point - (starts[task] if task >= 0 else 0.0)


def test_kill_points_are_reproducible_and_spread():
    a, b = kill_points(10.0), kill_points(10.0)
    assert a == b and len(a) == POINTS
    assert all(i * 0.5 <= p < (i + 1) * 0.5 for i, p in enumerate(a))
    assert anchor([1.0, 2.5, 4.0], 3.0) == (1, 0.5) and anchor([1.0, 2.5], 0.25) == (-1, 0.25)


def _trial(lab, peer, refs, index, point, log):
    lab.reset()
    transaction = 'each' if index % 2 else 'all'
    run = lab.spawn(migrate_all_transaction=transaction)
    if not run.kill_at(*point):
        assert run.returncode == 0, run.output[-4000:]
    assert lab.pg.password not in run.output
    where = lab.verify(peer, refs)
    stage = last_task(run.stdout)
    partials = lab.partials()
    again = lab.play()
    assert again.returncode == 0, 'the run after the kill at task %d + %.2fs (%s) failed:\n%s' % (
        point[0], point[1], stage, again.output[-5000:])
    lab.verify(peer, refs, expect=HEADS)
    assert lab.partials() == [], 'temp files of the killed backup were left: %s' % lab.partials()
    records = lab.role_records()[-len(ORDER):]
    assert [r['service'] for r in records] == ORDER, records
    assert all(r['outcome'] in ('success', 'unchanged') for r in records), records
    log.append((index, point[0], point[1], transaction, 'killed' if run.killed else 'finished', stage,
                ' '.join('%s=%s' % (n, where[n]) for n in ORDER), len(partials), round(again.elapsed, 1)))


def test_sigkill_at_random_points_loses_nothing(pg, drizzle_peer, refs, tmp_path):
    labs = [FaultLab(pg, tmp_path / ('lane%d' % n)) for n in range(LANES)]
    started = time.monotonic()
    try:
        # time a real run in each lane, both lanes busy (as during the trials), noting when each task starts
        runs = [lab.spawn() for lab in labs]
        timelines = [None] * LANES
        threads = [threading.Thread(target=lambda n=n: timelines.__setitem__(n, runs[n].follow()))
                   for n in range(LANES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        for lab, run in zip(labs, runs):
            assert run.returncode == 0, run.output[-5000:]
            lab.verify(drizzle_peer, refs, expect=HEADS)
        duration = sum(run.elapsed for run in runs) / len(runs)
        points = kill_points(duration)
        log = []
        lock = threading.Lock()

        def lane(n):
            mine = []
            for index in range(n, POINTS, LANES):
                _trial(labs[n], drizzle_peer, refs, index, anchor(timelines[n], points[index]), mine)
            with lock:
                log.extend(mine)

        with ThreadPoolExecutor(LANES) as pool:
            for future in [pool.submit(lane, n) for n in range(LANES)]:
                future.result()
    finally:
        for lab in labs:
            lab.drop()
    log.sort()
    table = '\n'.join('%2d task %2d +%5.2fs %-4s %-8s %-70s %s partials=%d next=%ss' % row for row in log)
    print('\nrun duration %.1fs; %d kill points; suite %.0fs\n%s' % (duration, POINTS, time.monotonic() - started,
                                                                     table))
    assert len(log) == POINTS
    killed = [row for row in log if row[4] == 'killed']
    assert len(killed) >= POINTS * 3 // 4, 'most points must land inside the run:\n' + table
    # the points reached into the migrations, not only the reading steps before them: the kills left the
    # homelab in at least three different states (nothing applied, dashboard only, dashboard and a bot, ...)
    assert len(set(row[6] for row in killed)) >= 3, table


@pytest.mark.parametrize('tool', ['alembic', 'pg_dump'])
def test_sigkill_while_a_tool_runs_leaves_no_orphan(pg, drizzle_peer, refs, tmp_path, tool):
    """Two points the random ones may miss: the kill lands while `alembic upgrade` or `pg_dump` is running.

    alembic runs in a process group of its own, so killing ansible-playbook's group does not reach it
    directly: it must die with the module (PR_SET_PDEATHSIG), its transaction must be rolled back, and
    its server session must end (no lock, no backend left). pg_dump must die too, leaving only a hidden
    partial file that the next run removes.
    """
    lab = FaultLab(pg, tmp_path)
    try:
        if tool == 'pg_dump':  # a dump that takes a moment
            lab.move('dashboard', '002')
            lab.dbs['dashboard'].execute(
                "INSERT INTO users (username, email) SELECT md5(i::text), md5(i::text) || '@example.org' "
                "FROM generate_series(1, 200000) i")
        run = lab.spawn()
        needle = 'upgrade' if tool == 'alembic' else 'pg_dump'

        def running_tool():
            return [cmd for cmd in marked_processes(lab.marker).values() if tool in cmd and needle in cmd]
        seen = wait_for(lambda: running_tool() or not run.running(), 300, interval=0.01)
        assert run.running() and seen, 'never saw %s running:\n%s' % (tool, run.wait().output[-3000:])
        run.kill()
        where = lab.verify(drizzle_peer, refs)  # waits for the tool to die; fails if it is still alive
        assert where['stream-bot'] is None and where['discord-bot'] is None, where
        assert where['dashboard'] in ((None, '006') if tool == 'alembic' else ('002',)), where
        again = lab.play()
        assert again.returncode == 0, again.output[-5000:]
        lab.verify(drizzle_peer, refs, expect=HEADS)
        assert lab.partials() == []
    finally:
        lab.drop()


def test_the_checks_see_an_orphan_a_held_lock_and_a_half_applied_schema(pg, drizzle_peer, refs, tmp_path):
    """The detectors the kill tests rely on do fire (so their silence above means something)."""
    import os
    import subprocess

    from harness.faults import MARKER_VAR

    from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key

    lab = FaultLab(pg, tmp_path)
    try:
        orphan = subprocess.Popen(['sleep', '30'], env=dict(os.environ, **{MARKER_VAR: lab.marker}),
                                  start_new_session=True)
        try:
            # the child shows the marker in /proc/<pid>/environ only once it has exec'd sleep
            assert wait_for(lambda: orphan.pid in marked_processes(lab.marker), 10), marked_processes(lab.marker)
            with pytest.raises(AssertionError, match='still alive'):
                lab.verify(drizzle_peer, refs, settle=0.5)
        finally:
            orphan.kill()
            orphan.wait()
        conn = lab.dbs['stream-bot'].conn()
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('stream-bot'))
            with pytest.raises(AssertionError, match='lock'):
                lab.verify(drizzle_peer, refs, settle=0.5)
        finally:
            conn.close()
        lab.verify(drizzle_peer, refs, expect=dict.fromkeys(ORDER))
        # half of a migration: its first statement without its tracking row
        lab.dbs['discord-bot'].execute('CREATE TABLE "tickets" (id int)')
        with pytest.raises(AssertionError, match='schema differs|discord-bot'):
            lab.verify(drizzle_peer, refs)
    finally:
        lab.drop()
