"""Four `ansible-playbook playbooks/migrate.yml` runs started at once on the same homelab.

They share the databases, the backup directory and the audit log. The per-service migration lock must
serialize them: every migration applied exactly once (tracking rows unique, the schema a clean run's),
and every run either succeeds (the later ones find nothing left to do) or fails naming the lock holder.
"""

import os
import re
import subprocess

import pytest

from harness.faults import ALEMBIC, BOTS, DASHBOARD_REVS, HEADS, ORDER, wait_for
from harness.ansible import run_report

from ansible_collections.homelab.migrations.plugins.module_utils.lock import lock_key

pytestmark = pytest.mark.peer

RUNS = 4


@pytest.mark.parametrize('lock_wait', [60, 0])
def test_four_runs_at_once_apply_every_migration_once(lab, drizzle_peer, refs, lock_wait):
    lab.move('dashboard', '002')
    dashboard = lab.dbs['dashboard']
    dashboard.execute("INSERT INTO users (username, email) SELECT 'user' || i, 'user' || i || '@example.org' "
                      "FROM generate_series(1, 500) i")
    users = 'SELECT id, username, email FROM users ORDER BY id'
    before_users = dashboard.query(users)
    runs = [lab.spawn(migrate_all_lock_wait=lock_wait) for _run in range(RUNS)]
    for run in runs:
        run.wait(900)
    for run in runs:
        assert lab.pg.password not in run.output
        if run.returncode != 0:
            # a clear failure: the lock holder named (pid, application and since when), nothing else
            fatal = run_report(run.stdout)
            assert re.search(r'is locked by pid \d+ \(homelab\.migrations:[a-z-]+\)', fatal), fatal[-3000:]
            assert 'lock_wait' in fatal, fatal[-3000:]
    if lock_wait:
        assert all(run.returncode == 0 for run in runs), [run.output[-3000:] for run in runs if run.returncode]
    assert any(run.returncode == 0 for run in runs), 'at least one run gets through'

    lab.verify(drizzle_peer, refs, expect=HEADS)
    # exactly once: across all four runs' audit records, every migration was applied by one run only
    applied = {}
    for rec in lab.audit():
        if rec.get('source') == 'role' or rec.get('check_mode'):
            continue
        for step in rec.get('applied') or []:
            applied.setdefault((rec['service'], step), []).append(rec)
    want = [('dashboard', r) for r in DASHBOARD_REVS[2:]] + [(b, t) for b, tags in BOTS.items() for t in tags]
    assert sorted(applied) == sorted(want), sorted(applied)
    twice = dict((k, len(v)) for k, v in applied.items() if len(v) != 1)
    assert not twice, 'applied more than once: %s' % twice
    # every run left an audit record for each service it worked on, and no record says a run lost data
    role = lab.role_records()
    assert set(r['service'] for r in role) == set(ORDER)
    assert all(r['outcome'] in ('success', 'unchanged', 'failed', 'skipped') for r in role), role
    # the dashboard's rows from before the runs are all there
    assert dashboard.query(users) == before_users


def test_a_run_that_never_got_the_lock_does_not_undo_the_other_runs_work(lab, drizzle_peer, refs):
    """Run B plans dashboard 005 -> 006 and takes its backup, then waits for the lock that "run A" (the test)
    holds; A migrates to 006 and writes rows meanwhile.

    B's apply times out on the lock having changed nothing, so B must neither "go back to its pre-run
    revision" (that reverts A's migration) nor restore its backup over A's work (that loses A's rows and
    leaves alembic_version at 005 beside 006's table): it fails naming the holder, and changes nothing.
    """
    lab.move('dashboard', '005')
    dashboard = lab.dbs['dashboard']
    dashboard.execute("INSERT INTO users (username, email) VALUES ('ana', 'ana@example.org')")
    holder = dashboard.conn()  # run A: holds dashboard's migration lock, as homelab_migration_apply does
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, %s)', lock_key('dashboard'))
            cur.execute('SELECT pg_backend_pid()')
            a_pid = cur.fetchone()[0]
        run = lab.spawn(tags='dashboard', migrate_all_lock_wait=6)
        assert wait_for(lambda: 'dashboard: moving it' in open(run.out.name).read()
                        or not run.running(), 300)
        # A migrates while B waits for the lock
        out = subprocess.run([ALEMBIC, 'upgrade', 'head'], cwd=os.path.join(lab.services_dir, 'dashboard'),
                             env=dict(os.environ, DATABASE_URL=dashboard.url), check=False, capture_output=True,
                             text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        dashboard.execute("INSERT INTO service_status (service_name, status) VALUES ('grafana', 'up_to_date')")
        dashboard.execute("INSERT INTO users (username, email) VALUES ('bo', 'bo@example.org')")
        after_a = lab.snapshot(['dashboard'])
        run.wait(300)  # A still holds the lock until B is done
    finally:
        holder.close()
    assert run.returncode != 0, run.output[-4000:]
    fatal = run_report(run.stdout)
    assert 'is locked by pid %d' % a_pid in fatal, fatal[-3000:]
    rec = [r for r in lab.role_records() if r['service'] == 'dashboard'][-1]
    assert rec['outcome'] == 'failed' and 'locked by pid %d' % a_pid in rec['error'], rec
    # nothing to recover: no going back, no restore attempted, no "NOT RECOVERED" alarm
    assert not rec['reverted'], rec
    assert not any(word in (rec['recovery'] or '') for word in ('restor', 'NOT RECOVERED', 'going back')), rec
    # A's work is intact: dashboard at 006 with A's row
    assert lab.snapshot(['dashboard']) == after_a
    lab.verify(drizzle_peer, refs, expect={'dashboard': '006', 'stream-bot': None, 'discord-bot': None})
