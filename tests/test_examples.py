"""The example homelab (examples/homelab) is sound with the services' own tools.

The dashboard goes to head and back to base with the real `alembic` CLI; the bots go to head with
drizzle-orm's real migrate() (the drizzle peer) and back with their hand-written down files; every
down file undoes exactly its own migration; the committed drizzle snapshots match the schemas; the
inventory renders service specs that reach a real server with a password full of URL-hostile characters.
"""

import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys

import psycopg2
import pytest

from harness.ansible import run_playbook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOMELAB = os.path.join(REPO, 'examples', 'homelab')
SERVICES = os.path.join(HOMELAB, 'services')
DASHBOARD = os.path.join(SERVICES, 'dashboard')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')
BOTS = {
    'stream-bot': ['0000_initial_schema', '0001_add_giveaways', '0002_add_currency_system',
                   '0003_add_platform_user_unique_constraint', '0004_add_giveaway_concurrency_improvements'],
    'discord-bot': ['0000_initial_schema', '0001_add_ticket_categories', '0002_add_stream_notifications'],
}
DASHBOARD_TABLES = {'public.users', 'public.user_preferences', 'public.email_verification_backfill_005',
                    'public.service_status'}
BREAKPOINT = '--> statement-breakpoint'


# ------------------------------------------------------------------------------------------ helpers
def alembic(db_url, *args, env_extra=None):
    env = dict(os.environ)
    env.pop('DATABASE_URL', None)
    if db_url is not None:
        env['DATABASE_URL'] = db_url
    env.update(env_extra or {})
    return subprocess.run([ALEMBIC] + list(args), cwd=DASHBOARD, env=env, check=False, capture_output=True, text=True,
                          timeout=180)


def alembic_ok(db_url, *args):
    out = alembic(db_url, *args)
    assert out.returncode == 0, 'alembic %s failed:\n%s\n%s' % (' '.join(args), out.stdout, out.stderr)
    return out


def version(db):
    rows = db.query('SELECT version_num FROM alembic_version')
    return [r[0] for r in rows]


def migrations_dir(bot):
    return os.path.join(SERVICES, bot, 'migrations')


def journal(folder):
    with open(os.path.join(folder, 'meta', '_journal.json')) as fh:
        return json.load(fh)


def statements(text):
    """A drizzle file split as drizzle-orm splits it, without the chunks that are empty or comments only."""
    out = []
    for chunk in text.split(BREAKPOINT):
        code = [line for line in chunk.splitlines() if line.strip() and not line.strip().startswith('--')]
        if code:
            out.append(chunk)
    return out


def revert(db, folder, entry, schema='drizzle', table='__drizzle_migrations'):
    """Run <tag>.down.sql and remove the migration's row, in one transaction."""
    with open(os.path.join(folder, entry['tag'] + '.down.sql')) as fh:
        chunks = statements(fh.read())
    assert chunks, 'empty down file for %s' % entry['tag']
    conn = psycopg2.connect(db.url)
    try:
        with conn, conn.cursor() as cur:
            for chunk in chunks:
                cur.execute(chunk)
            cur.execute('DELETE FROM "%s"."%s" WHERE created_at = %%s' % (schema, table), (entry['when'],))
            assert cur.rowcount == 1, 'no tracking row for %s' % entry['tag']
    finally:
        conn.close()


def sha256_file(path):
    with open(path, 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def partial_folder(src, dest, count):
    """A copy of a drizzle folder whose journal lists only its first ``count`` entries."""
    if not os.path.exists(dest):
        shutil.copytree(src, dest)
    data = journal(src)
    data['entries'] = data['entries'][:count]
    with open(os.path.join(dest, 'meta', '_journal.json'), 'w') as fh:
        json.dump(data, fh)
    return dest


# ---------------------------------------------------------------------------------------- dashboard
def test_dashboard_layout():
    """Revision files are NNN_description.py with ids 001..006 in one line of history."""
    out = subprocess.run([ALEMBIC, 'history'], cwd=DASHBOARD, check=False, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != 'DATABASE_URL'})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split(',')[0] for line in lines] == [
        '005 -> 006 (head)', '004 -> 005', '003 -> 004', '002 -> 003', '001 -> 002', '<base> -> 001']
    files = sorted(f for f in os.listdir(os.path.join(DASHBOARD, 'alembic', 'versions')) if f.endswith('.py'))
    assert [f[:4] for f in files] == ['001_', '002_', '003_', '004_', '005_', '006_']
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(os.path.join(DASHBOARD, 'alembic.ini'))
    assert ini.get('alembic', 'script_location') == 'alembic'
    assert not ini.has_option('alembic', 'sqlalchemy.url')  # the URL comes from DATABASE_URL only


def test_dashboard_head_and_base_with_data_migration(fresh_db):
    url = fresh_db.password_url  # the canary password holds '%', '@', ':', '/' and '?'
    assert '%25' in url
    alembic_ok(url, 'upgrade', '004')
    assert version(fresh_db) == ['004']
    fresh_db.execute(
        "INSERT INTO users (id, username, email, email_verified, created_at) VALUES "
        "(1, 'legacy_unverified', 'a@example.org', false, '2024-06-01'), "
        "(2, 'legacy_verified', 'b@example.org', true, '2024-03-01'), "
        "(3, 'new_unverified', 'c@example.org', false, '2025-06-01'), "
        "(4, 'legacy_unverified_2', 'd@example.org', false, '2024-12-31 23:00+00')")
    before = fresh_db.query('SELECT id, email_verified FROM users ORDER BY id')
    assert before == [(1, False), (2, True), (3, False), (4, False)]

    alembic_ok(url, 'upgrade', 'head')
    assert version(fresh_db) == ['006']
    assert DASHBOARD_TABLES <= set(fresh_db.tables())
    assert fresh_db.query("SELECT count(*) FROM pg_indexes WHERE indexname IN ('ix_users_created_at', "
                          "'ix_users_email')")[0][0] == 2
    # the data migration verified the legacy accounts and nobody else
    assert fresh_db.query('SELECT id, email_verified FROM users ORDER BY id') == [
        (1, True), (2, True), (3, False), (4, True)]
    assert fresh_db.query('SELECT user_id, previous_value FROM email_verification_backfill_005 ORDER BY 1') == [
        (1, False), (4, False)]

    # its downgrade puts back exactly the previous values (2 stays verified)
    alembic_ok(url, 'downgrade', '004')
    assert version(fresh_db) == ['004']
    assert fresh_db.query('SELECT id, email_verified FROM users ORDER BY id') == before
    assert 'public.email_verification_backfill_005' not in fresh_db.tables()

    alembic_ok(url, 'upgrade', 'head')
    alembic_ok(url, 'downgrade', 'base')
    assert version(fresh_db) == []
    assert fresh_db.tables() == ['public.alembic_version']


def test_dashboard_head_base_head_same_schema(fresh_db, make_db):
    url = fresh_db.password_url
    alembic_ok(url, 'upgrade', 'head')
    at_head = fresh_db.schema_dump()
    alembic_ok(url, 'downgrade', 'base')
    at_base = fresh_db.schema_dump()
    empty = make_db()
    alembic_ok(empty.url, 'stamp', 'base')  # creates alembic_version only
    assert at_base == empty.schema_dump()
    alembic_ok(url, 'upgrade', 'head')
    assert fresh_db.schema_dump() == at_head
    # and one step at a time down and up again lands on the same schema
    for _step in range(6):
        alembic_ok(url, 'downgrade', '-1')
    assert version(fresh_db) == []
    for _step in range(6):
        alembic_ok(url, 'upgrade', '+1')
    assert version(fresh_db) == ['006']
    assert fresh_db.schema_dump() == at_head


def test_dashboard_offline_sql_needs_no_database():
    out = alembic(None, 'upgrade', 'head', '--sql')
    assert out.returncode == 0, out.stderr
    assert 'CREATE TABLE users' in out.stdout
    assert "UPDATE users SET email_verified = true WHERE created_at < '2025-01-01'" in out.stdout
    assert "UPDATE alembic_version SET version_num='006'" in out.stdout
    down = alembic(None, 'downgrade', '006:004', '--sql')
    assert down.returncode == 0, down.stderr
    assert 'FROM email_verification_backfill_005 AS b' in down.stdout
    assert 'DROP TABLE service_status' in down.stdout


def test_dashboard_without_database_url_says_what_to_do():
    out = alembic(None, 'current')
    assert out.returncode != 0
    assert 'DATABASE_URL is not set' in out.stderr


def test_dashboard_accepts_postgres_scheme(fresh_db):
    url = fresh_db.password_url.replace('postgresql://', 'postgres://', 1)
    alembic_ok(url, 'upgrade', '001')
    assert version(fresh_db) == ['001']


# --------------------------------------------------------------------------------------------- bots
@pytest.mark.parametrize('bot', sorted(BOTS))
def test_bot_layout_and_down_files(bot):
    folder = migrations_dir(bot)
    entries = journal(folder)['entries']
    assert [e['tag'] for e in entries] == BOTS[bot]
    whens = [e['when'] for e in entries]
    assert whens == sorted(whens) and len(set(whens)) == len(whens)
    for entry in entries:
        for suffix in ('.sql', '.down.sql'):
            path = os.path.join(folder, entry['tag'] + suffix)
            assert os.path.isfile(path), path
        assert os.path.isfile(os.path.join(folder, 'meta', '%04d_snapshot.json' % entry['idx']))
    with open(os.path.join(folder, 'README.md')) as fh:
        readme = fh.read()
    for tag in BOTS[bot]:
        assert tag in readme


@pytest.mark.peer
@pytest.mark.parametrize('bot', sorted(BOTS))
def test_bot_head_with_drizzle_then_every_down_file(bot, drizzle_peer, fresh_db, make_db):
    folder = migrations_dir(bot)
    entries = journal(folder)['entries']
    result = drizzle_peer.migrate(folder, fresh_db.password_url)
    rows = fresh_db.query('SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id')
    assert rows == [(sha256_file(os.path.join(folder, e['tag'] + '.sql')), e['when']) for e in entries]
    assert len(result['rows']) == len(entries)
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []
    tables = set(fresh_db.tables())
    expected = {'stream-bot': {'public.users', 'public.platform_connections', 'public.bot_settings',
                               'public.giveaways', 'public.giveaway_entries', 'public.user_balances',
                               'public.giveaway_entry_attempts'},
                'discord-bot': {'public.discord_users', 'public.servers', 'public.tickets',
                                'public.ticket_categories', 'public.stream_notification_settings',
                                'public.tracked_streamers'}}[bot]
    assert tables == expected | {'drizzle.__drizzle_migrations'}

    for entry in reversed(entries):
        revert(fresh_db, folder, entry)
    assert fresh_db.query('SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0] == 0
    assert fresh_db.tables() == ['drizzle.__drizzle_migrations']
    fresh_db.execute('DROP SCHEMA drizzle CASCADE')
    assert fresh_db.schema_dump() == make_db().schema_dump()


@pytest.mark.peer
@pytest.mark.parametrize('bot', sorted(BOTS))
def test_bot_each_down_file_undoes_exactly_its_migration(bot, drizzle_peer, fresh_db, tmp_path):
    """Schema after migrations 0..k then reverting k equals the schema after 0..k-1."""
    src = migrations_dir(bot)
    entries = journal(src)['entries']
    work = str(tmp_path / 'migrations')
    schemas = []
    for count in range(1, len(entries) + 1):
        partial_folder(src, work, count)
        drizzle_peer.migrate(work, fresh_db.url)
        schemas.append(fresh_db.schema_dump())
    assert len(set(schemas)) == len(entries)  # every migration changes the schema
    for k in range(len(entries) - 1, 0, -1):
        revert(fresh_db, src, entries[k])
        assert fresh_db.schema_dump() == schemas[k - 1], 'reverting %s left a different schema' % entries[k]['tag']


@pytest.mark.peer
@pytest.mark.parametrize('bot', sorted(BOTS))
def test_bot_head_base_head_same_schema(bot, drizzle_peer, fresh_db):
    folder = migrations_dir(bot)
    entries = journal(folder)['entries']
    drizzle_peer.migrate(folder, fresh_db.password_url)
    at_head = fresh_db.schema_dump()
    rows_at_head = fresh_db.query('SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id')
    for entry in reversed(entries):
        revert(fresh_db, folder, entry)
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == [e['tag'] for e in entries]
    drizzle_peer.migrate(folder, fresh_db.password_url)
    assert fresh_db.schema_dump() == at_head
    assert fresh_db.query('SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id') == rows_at_head


@pytest.mark.peer
def test_stream_bot_0004_counts_existing_entries_and_constraint_guards_duplicates(drizzle_peer, fresh_db, tmp_path):
    src = migrations_dir('stream-bot')
    work = partial_folder(src, str(tmp_path / 'migrations'), 4)
    drizzle_peer.migrate(work, fresh_db.url)
    fresh_db.execute(
        "INSERT INTO users (id, email) VALUES ('u1', 'streamer@example.org');"
        "INSERT INTO giveaways (id, user_id, title, keyword) VALUES (1, 'u1', 'Keyboard', '!enter'),"
        " (2, 'u1', 'Mouse', '!mouse');"
        "INSERT INTO giveaway_entries (giveaway_id, platform_username, platform) VALUES"
        " (1, 'alice', 'twitch'), (1, 'bob', 'twitch'), (1, 'alice', 'kick')")
    partial_folder(src, work, 5)
    drizzle_peer.migrate(work, fresh_db.url)
    assert fresh_db.query('SELECT id, entry_count FROM giveaways ORDER BY id') == [(1, 3), (2, 0)]
    with pytest.raises(psycopg2.errors.UniqueViolation):
        fresh_db.execute("INSERT INTO giveaway_entries (giveaway_id, platform_username, platform) "
                         "VALUES (1, 'alice', 'twitch')")
    # the down file keeps the entries and drops what 0004 added
    revert(fresh_db, src, journal(src)['entries'][4])
    assert fresh_db.query('SELECT count(*) FROM giveaway_entries')[0][0] == 3
    assert fresh_db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'giveaways' "
                          "AND column_name = 'entry_count'")[0][0] == 0


@pytest.mark.peer
@pytest.mark.parametrize('bot', sorted(BOTS))
def test_bot_snapshots_match_schema(bot, drizzle_peer, tmp_path):
    """drizzle-kit finds nothing to generate: schema.ts, the snapshots and the journal agree."""
    work = str(tmp_path / bot)
    shutil.copytree(os.path.join(SERVICES, bot), work)
    before = sorted(os.listdir(os.path.join(work, 'migrations')))
    env = dict(os.environ, NODE_PATH=os.path.join(drizzle_peer.peer_dir, 'node_modules'))
    env.pop('DATABASE_URL', None)
    kit = os.path.join(drizzle_peer.peer_dir, 'node_modules', '.bin', 'drizzle-kit')
    out = subprocess.run([kit, 'generate'], cwd=work, env=env, check=False, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'No schema changes' in out.stdout, out.stdout
    assert sorted(os.listdir(os.path.join(work, 'migrations'))) == before
    check = subprocess.run([kit, 'check'], cwd=work, env=env, check=False, capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr


# ---------------------------------------------------------------------------------------- inventory
SHOW_PLAY = '''- hosts: migrations
  gather_facts: false
  tasks:
    - name: write the rendered service specs
      ansible.builtin.copy:
        content: "{{ migrate_all_services | to_json }}"
        dest: "%s"
        mode: "0600"
'''


def render_services(tmp_path, extra_vars):
    out_file = str(tmp_path / 'services.json')
    play = tmp_path / 'show.yml'
    play.write_text(SHOW_PLAY % out_file)
    proc = run_playbook(str(play), inventory=os.path.join(HOMELAB, 'inventory', 'hosts.yml'),
                        extra_vars=extra_vars, cwd='/')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out_file) as fh:
        return json.load(fh)


def test_inventory_renders_working_specs(pg, fresh_db, tmp_path):
    services = render_services(tmp_path, {
        'homelab_demo_pg_host': pg.host, 'homelab_demo_pg_port': pg.port, 'homelab_demo_pg_user': 'homelab',
        'homelab_demo_pg_password': pg.password, 'homelab_demo_db_dashboard': fresh_db.name,
        'homelab_demo_db_stream_bot': fresh_db.name, 'homelab_demo_db_discord_bot': fresh_db.name})
    assert [s['name'] for s in services] == ['dashboard', 'stream-bot', 'discord-bot']
    assert [s['tool'] for s in services] == ['alembic', 'drizzle', 'drizzle']
    assert {s['name']: s['depends_on'] for s in services} == {
        'dashboard': [], 'stream-bot': ['dashboard'], 'discord-bot': ['dashboard', 'stream-bot']}
    for spec in services:
        assert spec['path'] == os.path.join(SERVICES, spec['name'])
        assert os.path.isdir(spec['path'])
        assert pg.password not in spec['database_url']  # percent-encoded, not raw
        conn = psycopg2.connect(spec['database_url'])  # the encoded password really authenticates
        with conn.cursor() as cur:
            cur.execute('SELECT current_user, current_database()')
            assert cur.fetchone() == ('homelab', fresh_db.name)
        conn.close()


def test_inventory_without_password(pg, fresh_db, tmp_path):
    services = render_services(tmp_path, {
        'homelab_demo_pg_host': pg.host, 'homelab_demo_pg_port': pg.port,
        'homelab_demo_db_dashboard': fresh_db.name})
    url = services[0]['database_url']
    assert url == 'postgresql://postgres@%s:%s/%s' % (pg.host, pg.port, fresh_db.name)
    assert services[1]['database_url'].endswith('/stream_bot')
    assert services[2]['database_url'].endswith('/discord_bot')
    psycopg2.connect(url).close()
