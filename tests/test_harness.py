"""The harness is real: a table survives a server restart on a throwaway cluster."""

import psycopg2
import pytest


def test_fresh_db_is_usable(fresh_db):
    fresh_db.execute('CREATE TABLE t (id int PRIMARY KEY, v text)')
    fresh_db.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    assert fresh_db.query('SELECT count(*) FROM t')[0][0] == 2
    assert set(fresh_db.checksums()) == {'public.t'}


def test_password_role_needs_its_password(fresh_db):
    conn = psycopg2.connect(fresh_db.password_url)
    conn.close()
    bad = fresh_db.password_url.replace('Cnry', 'Wrong', 1)
    with pytest.raises(psycopg2.OperationalError, match='password authentication failed'):
        psycopg2.connect(bad)


def test_table_survives_restart(own_cluster):
    name = own_cluster.create_database()
    conn = own_cluster.connect(name)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE survives (v text); INSERT INTO survives VALUES ('still here')")
    conn.close()
    own_cluster.restart()
    conn = own_cluster.connect(name)
    with conn.cursor() as cur:
        cur.execute('SELECT v FROM survives')
        assert cur.fetchall() == [('still here',)]
    conn.close()


def test_table_survives_crash(own_cluster):
    name = own_cluster.create_database()
    conn = own_cluster.connect(name)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE crash (v int); INSERT INTO crash VALUES (42)")
    conn.close()
    own_cluster.kill()
    own_cluster.start()
    conn = own_cluster.connect(name)
    with conn.cursor() as cur:
        cur.execute('SELECT v FROM crash')
        assert cur.fetchall() == [(42,)]
    conn.close()
