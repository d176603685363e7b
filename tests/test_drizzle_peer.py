"""The drizzle-orm peer is the real thing: migrate() writes what drizzle-orm writes, status reads it back."""

import hashlib
import json
import os

import pytest

pytestmark = pytest.mark.peer

STREAM_BOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'examples', 'homelab', 'services', 'stream-bot', 'migrations')


def write_folder(root, migrations):
    """A drizzle migrations folder: [(tag, when, sql)] -> <root>/<tag>.sql + meta/_journal.json."""
    os.makedirs(os.path.join(root, 'meta'), exist_ok=True)
    entries = []
    for idx, (tag, when, sql) in enumerate(migrations):
        with open(os.path.join(root, tag + '.sql'), 'w') as fh:
            fh.write(sql)
        entries.append({'idx': idx, 'version': '7', 'when': when, 'tag': tag, 'breakpoints': True})
    with open(os.path.join(root, 'meta', '_journal.json'), 'w') as fh:
        json.dump({'version': '7', 'dialect': 'postgresql', 'entries': entries}, fh, indent=2)
    return root


def sha256_file(path):
    with open(path, 'rb') as fh:
        return hashlib.sha256(fh.read()).hexdigest()


FIRST = ('CREATE TABLE "peer_things" (\n\t"id" serial PRIMARY KEY NOT NULL,\n\t"name" text NOT NULL\n);\n'
         '--> statement-breakpoint\nCREATE INDEX "peer_things_name_idx" ON "peer_things" USING btree ("name");')
SECOND = 'ALTER TABLE "peer_things" ADD COLUMN "size" integer DEFAULT 0 NOT NULL;'


def test_versions_are_pinned(drizzle_peer):
    versions = drizzle_peer.versions()
    assert versions['drizzle-orm'].startswith('0.45.')
    assert versions['pg'].startswith('8.')
    assert versions['drizzle-kit'].startswith('0.31.')


def test_migrate_writes_drizzle_rows(drizzle_peer, fresh_db, tmp_path):
    folder = write_folder(str(tmp_path / 'm'), [('0000_things', 1700000000000, FIRST)])
    result = drizzle_peer.migrate(folder, fresh_db.password_url)
    assert result['ok'] is True
    expected_hash = sha256_file(os.path.join(folder, '0000_things.sql'))
    rows = fresh_db.query('SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id')
    assert rows == [(1, expected_hash, 1700000000000)]
    assert result['rows'] == [{'id': 1, 'hash': expected_hash, 'created_at': 1700000000000}]
    assert 'public.peer_things' in fresh_db.tables()
    assert fresh_db.query("SELECT to_regclass('public.peer_things_name_idx') IS NOT NULL")[0][0] is True
    # the tracking table is exactly drizzle-orm's
    cols = fresh_db.query("SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_schema = 'drizzle' AND table_name = '__drizzle_migrations' "
                          "ORDER BY ordinal_position")
    assert cols == [('id', 'integer'), ('hash', 'text'), ('created_at', 'bigint')]


def test_status_reports_what_migrate_would_apply(drizzle_peer, fresh_db, tmp_path):
    folder = str(tmp_path / 'm')
    write_folder(folder, [('0000_things', 1700000000000, FIRST)])
    before = drizzle_peer.status(folder, fresh_db.url)
    assert before['table_exists'] is False and before['pending'] == ['0000_things']
    assert 'drizzle.__drizzle_migrations' not in fresh_db.tables()  # status reads, never creates
    drizzle_peer.migrate(folder, fresh_db.url)
    write_folder(folder, [('0000_things', 1700000000000, FIRST), ('0001_size', 1700000100000, SECOND)])
    status = drizzle_peer.status(folder, fresh_db.url)
    assert status['applied'] == ['0000_things']
    assert status['pending'] == ['0001_size']
    assert status['last_created_at'] == 1700000000000
    assert [e['hash'] for e in status['entries']] == [sha256_file(os.path.join(folder, t + '.sql'))
                                                      for t in ('0000_things', '0001_size')]
    result = drizzle_peer.migrate(folder, fresh_db.url)
    assert [r['created_at'] for r in result['rows']] == [1700000000000, 1700000100000]
    assert drizzle_peer.status(folder, fresh_db.url)['pending'] == []
    assert fresh_db.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'peer_things' "
                          "AND column_name = 'size'")[0][0] == 1


def test_status_skips_older_entries_like_drizzle(drizzle_peer, fresh_db, tmp_path):
    """An entry older than the newest applied one is never applied by drizzle-orm: status agrees."""
    folder = str(tmp_path / 'm')
    write_folder(folder, [('0001_size', 1700000100000, FIRST)])
    drizzle_peer.migrate(folder, fresh_db.url)
    write_folder(folder, [('0000_late', 1700000000000, 'CREATE TABLE "late" ("id" integer);'),
                          ('0001_size', 1700000100000, FIRST)])
    status = drizzle_peer.status(folder, fresh_db.url)
    assert status['pending'] == []
    drizzle_peer.migrate(folder, fresh_db.url)
    assert 'public.late' not in fresh_db.tables()


def test_custom_table_and_schema(drizzle_peer, fresh_db, tmp_path):
    folder = write_folder(str(tmp_path / 'm'), [('0000_things', 1700000000000, FIRST)])
    result = drizzle_peer.migrate(folder, fresh_db.password_url, table='applied_sql', schema='ops')
    assert result['ok'] is True
    assert fresh_db.query('SELECT hash, created_at FROM ops.applied_sql') == [
        (sha256_file(os.path.join(folder, '0000_things.sql')), 1700000000000)]
    assert fresh_db.query("SELECT to_regclass('drizzle.__drizzle_migrations')")[0][0] is None
    status = drizzle_peer.status(folder, fresh_db.password_url, table='applied_sql', schema='ops')
    assert status['pending'] == [] and status['applied'] == ['0000_things']
    # the default table knows nothing of it
    assert drizzle_peer.status(folder, fresh_db.password_url)['pending'] == ['0000_things']


def test_failed_migration_is_json_error_and_rolls_back(drizzle_peer, fresh_db, tmp_path):
    folder = write_folder(str(tmp_path / 'm'), [
        ('0000_things', 1700000000000, FIRST),
        ('0001_broken', 1700000100000, 'ALTER TABLE "no_such_table" ADD COLUMN "x" integer;'),
    ])
    result = drizzle_peer.migrate(folder, fresh_db.password_url, check=False)
    assert result['exit_code'] == 1 and result['ok'] is False
    assert 'no_such_table' in result['error'] or result.get('code') == '42P01'
    assert fresh_db.password not in json.dumps(result)
    # one transaction: nothing of 0000 stayed either
    assert 'public.peer_things' not in fresh_db.tables()
    assert fresh_db.query('SELECT count(*) FROM drizzle.__drizzle_migrations')[0][0] == 0


def test_wrong_password_is_reported_without_the_password(drizzle_peer, fresh_db, tmp_path):
    folder = write_folder(str(tmp_path / 'm'), [('0000_things', 1700000000000, FIRST)])
    bad = fresh_db.password_url.replace('Cnry', 'Wrong', 1)
    result = drizzle_peer.status(folder, bad, check=False)
    assert result['exit_code'] == 1 and result['ok'] is False
    assert 'password authentication failed' in result['error']
    assert 'Wrong' not in json.dumps(result)


def test_example_stream_bot_hashes(drizzle_peer, fresh_db):
    """drizzle-orm's own reader hashes the example's files as sha256 of their bytes."""
    status = drizzle_peer.status(STREAM_BOT, fresh_db.url)
    assert [e['tag'] for e in status['entries']] == status['pending']
    for entry in status['entries']:
        assert entry['hash'] == sha256_file(os.path.join(STREAM_BOT, entry['tag'] + '.sql'))
