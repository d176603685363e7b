"""The PostgreSQL server goes away while a migration runs, through the real playbook.

The example homelab lives on a cluster of the test's own (own_cluster). stream-bot starts at
0002_add_currency_system with rows in its tables, and gets a slow migration appended (CREATE TABLE, INSERT,
pg_sleep(4), UPDATE). While pg_sleep runs in stream-bot's database, the server is

- restarted (pg_ctl stop -m fast; start): the run must fail clearly, the rescue must bring stream-bot back
  to its pre-run state once the server is back (or restore the backup), discord-bot is skipped;
- crashed (SIGKILL of the postmaster; start: crash recovery): the same;
- stopped and left down until the play has ended: the rescue cannot reach it, so the play must stop with
  the backup's path in its message; once the server is back, nothing was lost and that backup is valid.

Each case ends with the "nothing lost" checks (FaultLab.verify) and an audit record for stream-bot.
"""

import os

import pytest

from harness.faults import FaultLab, outcomes, wait_for
from harness.ansible import run_report

pytestmark = pytest.mark.peer

SLOW = '0005_slow_backfill'
SLOW_SQL = ('CREATE TABLE "slow_probe" ("id" serial PRIMARY KEY, "note" text);\n'
            '--> statement-breakpoint\n'
            'INSERT INTO "slow_probe" ("note") VALUES (\'started\');\n'
            '--> statement-breakpoint\n'
            'SELECT pg_sleep(4);\n'
            '--> statement-breakpoint\n'
            'UPDATE "users" SET "display_name" = \'after the sleep\';\n')
SLOW_DOWN = 'DROP TABLE "slow_probe";\n'
PRE_RUN = '0002_add_currency_system'


@pytest.fixture
def lab(own_cluster, tmp_path):
    lab = FaultLab(own_cluster, tmp_path)
    yield lab
    if not os.path.exists(os.path.join(own_cluster.datadir, 'postmaster.pid')):
        own_cluster.start()  # a failed test may have left it down
    lab.drop()


def _sleeping(lab):
    rows = lab.pg.connect().cursor()
    try:
        rows.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE '%%pg_sleep(4)%%' "
                     "AND state = 'active' AND pid <> pg_backend_pid()", (lab.dbs['stream-bot'].name,))
        return rows.fetchall()
    except Exception:
        return []
    finally:
        rows.connection.close()


@pytest.mark.parametrize('how', ['restart', 'crash', 'down'])
def test_server_lost_during_a_migration(lab, drizzle_peer, refs, how):
    lab.move('stream-bot', PRE_RUN)
    lab.seed_stream_bot()
    lab.add_migration('stream-bot', SLOW, SLOW_SQL, SLOW_DOWN)
    before = lab.snapshot(['stream-bot', 'discord-bot'])

    run = lab.spawn(migrate_all_lock_wait=10)
    assert wait_for(lambda: _sleeping(lab) or not run.running(), 300), 'the slow migration never started'
    assert run.running(), 'the run ended before the slow migration:\n' + run.wait().output[-4000:]
    if how == 'restart':
        lab.pg.restart('fast')
    elif how == 'crash':
        lab.pg.kill()
        lab.pg.start()
    else:
        lab.pg.stop('fast')
    run.wait(300)
    if how == 'down':
        lab.pg.start()

    out = run.output
    assert lab.pg.password not in out
    assert run.returncode != 0, 'the play must fail:\n' + out[-5000:]
    fatal = run_report(run.stdout)
    assert 'stream-bot failed' in fatal, fatal[-3000:]
    assert SLOW in fatal, 'the message names the migration that was running:\n' + fatal[-3000:]
    # a clear reason: the connection to the server was lost
    assert any(word in fatal for word in ('terminat', 'closed the connection', 'connection', 'server')), fatal

    # and does not blame a migration that did not fail (all three ran in one transaction, rolled back)
    for innocent in ('0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements'):
        assert 'migration %s failed' % innocent not in fatal, fatal[-3000:]

    role = lab.role_records()
    assert outcomes(role) == {'dashboard': 'success', 'stream-bot': 'failed', 'discord-bot': 'skipped'}, role
    rec = [r for r in role if r['service'] == 'stream-bot'][-1]
    assert rec['backup'] and os.path.exists(rec['backup']), rec
    if how == 'down':
        # nobody could go back or restore: the message says where the backup is
        assert rec['backup'] in fatal, fatal[-3000:]
    else:
        assert rec['recovery'], rec
        assert rec['recovery'].startswith('rolled back to ' + PRE_RUN) or 'restored the backup' in rec['recovery'], rec
    # once the server is back: stream-bot as before the run (schema and rows), discord-bot untouched
    assert lab.snapshot(['stream-bot', 'discord-bot']) == before
    lab.verify(drizzle_peer, refs, expect={'dashboard': '006', 'stream-bot': PRE_RUN, 'discord-bot': None})
    assert lab.backups('discord-bot') == []
