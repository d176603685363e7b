"""Which statement chunks are "blank" (not sent) must follow PostgreSQL's scanner, not Python's (red team 14).

drizzle-orm sends every chunk between ``--> statement-breakpoint`` markers; the collection skips the
ones the server would find empty (psycopg2 refuses an empty query). A chunk of a no-break space, an
ideographic space or a control character is a syntax error on the server, so drizzle-orm fails on it;
a ``--`` comment ends at a carriage return too. Each file is run by the real drizzle-orm and by the
adapter on fresh databases: both fail, or both succeed with the same tracking rows.
"""

import os

import pytest

from harness.drizzle_gen import drizzle_adapter, journal_entry, tracking_rows, write_journal

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ApplyError, PlanError

pytestmark = [pytest.mark.peer]

BP = '--> statement-breakpoint'
CASES = {
    'no_break_space_chunk': 'CREATE TABLE t1(id int);' + BP + '\n\u00a0\n',
    'ideographic_space_chunk': 'CREATE TABLE t1(id int);' + BP + '\n\u3000\n',
    'control_char_chunk': 'CREATE TABLE t1(id int);' + BP + '\n\x1c\n',
    'comment_ended_by_carriage_return': '-- old Mac line end\rCREATE TABLE t1(id int);' + BP + '\n-- x\rSELECT nope',
    # these held: same outcome before the fix
    'comments_only': '-- nothing here\n/* nor /* nested */ here */\n;',
    'empty_file': '',
    'comment_without_newline_last': 'CREATE TABLE t1(id int);' + BP + '\n-- end',
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_blank_chunks_as_the_server_sees_them(tmp_path, make_db, drizzle_peer, case):
    folder = tmp_path / 'svc' / 'migrations'
    os.makedirs(str(folder / 'meta'))
    with open(str(folder / '0000_x.sql'), 'w', encoding='utf-8', newline='') as fh:
        fh.write(CASES[case])
    write_journal(str(folder), [journal_entry(0, '0000_x', 1700000000000)])
    theirs_db = make_db()
    theirs = drizzle_peer.migrate(str(folder), theirs_db.url, check=False)
    ours_db = make_db()
    adapter = drizzle_adapter(tmp_path / 'svc', ours_db.url)
    conn = ours_db.conn()
    try:
        try:
            adapter.apply(conn, adapter.plan(adapter.read_state(conn), 'head'), {})
            ours_ok = True
        except (PlanError, ApplyError):
            ours_ok = False
    finally:
        conn.close()
    assert ours_ok == bool(theirs.get('ok')), theirs.get('error')
    assert (tracking_rows(ours_db) or []) == (tracking_rows(theirs_db) or [])
