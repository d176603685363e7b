"""`--check --diff` shows each planned service's SQL in the default output (the status task reports changed in
check mode when a plan would change something, so Ansible shows its diff); nothing pending, nothing shown."""

import pytest

from integration.roles.migrate_all.test_role import homelab  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.peer


def test_check_diff_prints_the_sql_of_every_planned_service(homelab):  # noqa: F811
    before = homelab.snapshot()
    proc = homelab.play(check=True, diff=True)
    assert proc.returncode == 0, proc.output[-3000:]
    out = proc.stdout
    # drizzle: the statements of the pending files, as they would be sent
    assert 'CREATE TABLE' in out and 'ticket_categories' in out and 'stream_notifications' in out, out[-4000:]
    assert 'giveaways' in out
    # alembic: what the run would do for the dashboard (its revisions; the SQL preview only when opted in)
    assert '001' in out and '006' in out
    assert homelab.snapshot() == before
    # without --diff: the same status, no SQL
    plain = homelab.play(check=True)
    assert plain.returncode == 0 and 'CREATE TABLE' not in plain.stdout


def test_check_diff_shows_nothing_when_nothing_is_pending(homelab):  # noqa: F811
    assert homelab.play().returncode == 0
    proc = homelab.play(check=True, diff=True, tags='stream-bot')
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'CREATE TABLE' not in proc.stdout
    assert 'changed=0' in proc.stdout, proc.stdout[-2000:]
