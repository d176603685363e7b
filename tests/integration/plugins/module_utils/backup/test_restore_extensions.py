"""Backups taken and restored with the service's own, non-superuser credentials, when a superuser created
extensions in its database (citext, pg_stat_statements): the restore the role relies on as its safety net
works with the credentials the service has (it keeps the extensions it cannot own and says so), or it
refuses before changing anything. Real PostgreSQL, real pg_dump / pg_restore / psql.
"""

import uuid
from urllib.parse import quote

import pytest

from harness.pg import Database

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError


@pytest.fixture
def service_db(pg):
    """A database owned by a non-superuser login role; a superuser added citext and pg_stat_statements."""
    role = 'svc_%s' % uuid.uuid4().hex[:8]
    password = 'pw-%s' % uuid.uuid4().hex
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute('CREATE ROLE %s LOGIN NOSUPERUSER PASSWORD %%s' % role, (password,))
    name = 't_%s' % uuid.uuid4().hex[:12]
    with conn.cursor() as cur:
        cur.execute('CREATE DATABASE "%s" OWNER %s' % (name, role))
    conn.close()
    db = Database(pg, name)
    db.execute('CREATE EXTENSION citext; CREATE EXTENSION pg_stat_statements')
    url = 'postgresql://%s:%s@%s:%d/%s' % (role, quote(password, safe=''), pg.host, pg.port, name)
    svc = Database(pg, name)
    svc_conn = __import__('psycopg2').connect(url)
    svc_conn.autocommit = True
    with svc_conn.cursor() as cur:
        cur.execute("""
            CREATE TABLE public.users (id serial PRIMARY KEY, email citext UNIQUE NOT NULL, note text);
            INSERT INTO public.users (email, note) SELECT 'User' || g || '@Example.org', 'n' || g
              FROM generate_series(1, 50) g;
            CREATE SCHEMA app;
            CREATE TABLE app.orders (id serial PRIMARY KEY, user_id int REFERENCES public.users(id), total int);
            INSERT INTO app.orders (user_id, total) SELECT g, g * 10 FROM generate_series(1, 50) g;
            CREATE VIEW public.big AS SELECT * FROM app.orders WHERE total > 100;
            CREATE FUNCTION public.lower_mail(citext) RETURNS text LANGUAGE sql AS 'SELECT lower($1::text)';
        """)
    svc_conn.close()
    yield {'db': svc, 'url': url, 'role': role}
    pg.drop_database(name)
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute('DROP ROLE IF EXISTS %s' % role)
    conn.close()


def extensions(db):
    return db.query("SELECT e.extname, r.rolname, n.nspname FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner "
                    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1")


def mutate(svc):
    conn = __import__('psycopg2').connect(svc['url'])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            UPDATE public.users SET note = 'changed'; DELETE FROM app.orders WHERE id > 10;
            DROP VIEW public.big; CREATE TABLE public.later (x citext);
        """)
    conn.close()


@pytest.mark.parametrize('fmt,clean', [('custom', 'objects'), ('custom', 'database'), ('directory', 'objects'),
                                       ('directory', 'database')])
def test_restore_with_the_services_own_credentials_keeps_the_extensions(service_db, tmp_path, fmt, clean):
    db = service_db['db']
    before = db.snapshot()
    ext_before = extensions(db)
    assert [e[:2] for e in ext_before] == [('citext', db.server.superuser), ('pg_stat_statements', db.server.superuser)]
    made = entry.run(dict(database_url=service_db['url'], dest=str(tmp_path / 'b'), service='svc', format=fmt))
    mutate(service_db)
    if clean == 'objects':  # clean: objects drops only what the backup holds
        db.execute('DROP TABLE public.later')
    result = entry.run(dict(database_url=service_db['url'], state='restored', path=made['path'], clean=clean))
    assert result['changed'] is True
    assert result['kept_extensions'] == ['citext', 'pg_stat_statements']
    assert any('kept them' in w for w in result['warnings'])
    assert db.snapshot() == before
    assert extensions(db) == ext_before
    # the restored objects still use the kept extension
    assert db.query("SELECT count(*) FROM public.users WHERE email = 'USER7@example.ORG'") == [(1,)]


def test_plain_backup_with_foreign_extensions_is_refused_before_any_change(service_db, tmp_path, pg):
    db = service_db['db']
    # the backup step says it, before the migration changes anything
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url=service_db['url'], dest=str(tmp_path / 'b'), service='svc', format='plain'))
    assert 'could not be restored with these credentials' in str(err.value) and 'format: custom' in str(err.value)
    assert err.value.result['error_code'] == 'not_restorable'
    # a plain backup made by someone else (a superuser), restored with the service's credentials
    made = entry.run(dict(database_url=db.url, dest=str(tmp_path / 'b'), service='svc', format='plain'))
    mutate(service_db)
    dirty = db.snapshot()
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url=service_db['url'], state='restored', path=made['path'], clean='database'))
    assert 'nothing was changed' in str(err.value) and 'citext' in str(err.value) and 'custom' in str(err.value)
    assert err.value.result['error_code'] == 'not_restorable' and err.value.result['untouched'] is True
    assert db.snapshot() == dirty


def test_an_extension_the_role_cannot_create_is_refused_before_any_change(service_db, tmp_path):
    db = service_db['db']
    made = entry.run(dict(database_url=service_db['url'], dest=str(tmp_path / 'b'), service='svc'))
    db.execute('DROP EXTENSION pg_stat_statements')  # not trusted: only a superuser may create it
    mutate(service_db)
    dirty = db.snapshot()
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url=service_db['url'], state='restored', path=made['path'], clean='database'))
    assert 'pg_stat_statements' in str(err.value) and 'nothing was changed' in str(err.value)
    assert 'CREATE EXTENSION pg_stat_statements' in str(err.value)
    assert err.value.result['error_code'] == 'not_restorable' and err.value.result['untouched'] is True
    assert db.snapshot() == dirty


def test_a_trusted_extension_the_role_may_create_is_created(service_db, tmp_path):
    db = service_db['db']
    made = entry.run(dict(database_url=service_db['url'], dest=str(tmp_path / 'b'), service='svc'))
    before = db.snapshot()
    db.execute('DROP EXTENSION citext CASCADE')  # citext is trusted: the owner of the database may create it
    result = entry.run(dict(database_url=service_db['url'], state='restored', path=made['path'], clean='database'))
    assert result['kept_extensions'] == ['pg_stat_statements']
    assert db.snapshot() == before
    assert [e[:2] for e in extensions(db)] == [('citext', service_db['role']),
                                               ('pg_stat_statements', db.server.superuser)]


@pytest.fixture
def guest_db(pg):
    """A database a superuser owns (so it owns public, PostgreSQL 15+: pg_database_owner), citext in its own
    schema ext; the service role may create in public and in the database, and its tables use ext.citext."""
    role = 'svc_%s' % uuid.uuid4().hex[:8]
    password = 'pw-%s' % uuid.uuid4().hex
    name = 't_%s' % uuid.uuid4().hex[:12]
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute('CREATE ROLE %s LOGIN NOSUPERUSER PASSWORD %%s' % role, (password,))
        cur.execute('CREATE DATABASE "%s"' % name)
    conn.close()
    db = Database(pg, name)
    db.execute('CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext; GRANT USAGE ON SCHEMA ext TO %s; '
               'GRANT CREATE, USAGE ON SCHEMA public TO %s; GRANT CREATE ON DATABASE "%s" TO %s'
               % (role, role, name, role))
    url = 'postgresql://%s:%s@%s:%d/%s' % (role, quote(password, safe=''), pg.host, pg.port, name)
    svc_conn = __import__('psycopg2').connect(url)
    svc_conn.autocommit = True
    with svc_conn.cursor() as cur:
        cur.execute("CREATE TABLE public.users (id serial PRIMARY KEY, email ext.citext UNIQUE); "
                    "INSERT INTO public.users (email) VALUES ('A@b'), ('c@D'); "
                    "CREATE SCHEMA app; CREATE TABLE app.t (x ext.citext)")
    svc_conn.close()
    yield {'db': db, 'url': url}
    pg.drop_database(name)
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute('DROP ROLE IF EXISTS %s' % role)
    conn.close()


def test_clean_database_in_a_database_another_role_owns_is_refused_before_any_change(guest_db, tmp_path):
    # red team 14: clean: database dropped public (owned by the database owner) and failed halfway, rolled back,
    # with psql's "must be owner of schema public" and nothing about what to do; clean: objects works
    db = guest_db['db']
    before = db.snapshot()
    made = entry.run(dict(database_url=guest_db['url'], dest=str(tmp_path / 'b'), service='svc'))
    db.execute("UPDATE public.users SET email = email || 'x'")
    dirty = db.snapshot()
    with pytest.raises(BackupError) as err:
        entry.run(dict(database_url=guest_db['url'], state='restored', path=made['path'], clean='database'))
    assert err.value.result['error_code'] == 'not_restorable' and err.value.result['untouched'] is True
    assert 'schema public' in str(err.value) and 'clean: objects' in str(err.value)
    assert db.snapshot() == dirty
    result = entry.run(dict(database_url=guest_db['url'], state='restored', path=made['path'], clean='objects'))
    assert result['kept_extensions'] == ['citext']
    assert db.snapshot() == before
