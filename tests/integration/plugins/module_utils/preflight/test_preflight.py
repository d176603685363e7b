"""Pre-flight findings on real PostgreSQL, the real alembic CLI and the drizzle-orm peer.

Each case: the finding appears in the status (and in the apply's check mode), the real run is refused
before anything is touched, and with the finding allowed the real run fails as predicted.
"""

import json
import os
import sys

import pytest

from harness.alembic_gen import AlembicProject
from harness.drizzle_gen import BP, generate, read_journal, write_journal

from ansible_collections.homelab.migrations.plugins.module_utils.preflight import squawk as preflight
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report

ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')


def drizzle_service(root, url, name='svc'):
    spec = service_defaults(dict(name=name, tool='drizzle', path=str(root), database_url=url))
    return spec, validate_service(spec)


def alembic_service(root, url, name='dash'):
    spec = service_defaults(dict(name=name, tool='alembic', path=str(root), database_url=url,
                                 alembic_command=[ALEMBIC]))
    return spec, validate_service(spec)


def status(svc, **plan):
    report = build_report([svc[0]], {svc[0]['name']: svc[1]}, plan=dict(plan) if plan else None)
    return report['services'][svc[0]['name']]


def apply(svc, check=False, **params):
    return run_apply(svc[0], svc[1], params, check_mode=check)


def add_migration(folder, text, raw=None):
    """Append one drizzle-kit style migration (``text`` or ``raw`` bytes) to the journal; returns its tag."""
    journal = read_journal(folder)
    idx = len(journal['entries'])
    tag = '%04d_preflight_%d' % (idx, idx)
    when = (journal['entries'][-1]['when'] + 1000) if journal['entries'] else 1700000000000
    journal['entries'].append({'idx': idx, 'version': '7', 'when': when, 'tag': tag, 'breakpoints': True})
    write_journal(folder, journal['entries'])
    with open(os.path.join(folder, tag + '.sql'), 'wb') as fh:
        fh.write(raw if raw is not None else text.encode('utf-8'))
    return tag


@pytest.fixture
def drizzle_lab(tmp_path, fresh_db):
    """A drizzle service with two migrations applied (tables gen_0000, gen_0001 with rows)."""
    folder = str(tmp_path / 'migrations')
    tags = generate(folder, 2)
    svc = drizzle_service(tmp_path, fresh_db.url)
    assert apply(svc)['applied'] == tags
    return svc, folder, fresh_db


def codes(findings, severity=None):
    return [f['code'] for f in findings if severity is None or f['severity'] == severity]


NOT_IN_TX = [
    ('concurrently', 'CREATE INDEX CONCURRENTLY "gen_0001_payload_idx" ON "gen_0001" USING btree ("payload");'),
    ('unique_concurrently', 'CREATE UNIQUE INDEX CONCURRENTLY gen_0001_id_u ON gen_0001 (id);'),
    ('vacuum', 'VACUUM (ANALYZE) "gen_0001";'),
    ('alter_system', "ALTER SYSTEM SET work_mem = '8MB';"),
    ('create_database', 'CREATE DATABASE "preflight_never_made";'),
    ('drop_index_concurrently', 'DROP INDEX CONCURRENTLY "gen_0001_name_idx";'),
    ('reindex_concurrently', 'REINDEX INDEX CONCURRENTLY "gen_0001_name_idx";'),
    # red team: the option-list spelling (PostgreSQL 14+), and statements refused the same way
    ('reindex_option_concurrently', 'REINDEX (CONCURRENTLY) TABLE "gen_0001";'),
    ('reindex_option_concurrently_true', 'REINDEX (VERBOSE, CONCURRENTLY true) INDEX "gen_0001_name_idx";'),
    ('discard_all', 'discard all;'),
    ('commit_prepared', "COMMIT PREPARED 'homelab_never_prepared';"),
]


@pytest.mark.parametrize('sql', [case[1] for case in NOT_IN_TX], ids=[case[0] for case in NOT_IN_TX])
def test_not_in_transaction_found_refused_and_fails_when_allowed(drizzle_lab, sql):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, 'ALTER TABLE "gen_0001" ADD COLUMN "note" text;\n%s\n%s' % (BP, sql))
    entry = status(svc)
    assert entry['pending_migrations'] == [tag]
    errors = [f for f in entry['findings'] if f['severity'] == 'error']
    assert [(f['code'], f['migration'], f['source']) for f in errors] == [('not_in_transaction', tag,
                                                                           'homelab.migrations')]
    assert errors[0]['statement'] == sql.rstrip(';')
    assert 'transaction' in errors[0]['message'] and 'by hand' in errors[0]['message']

    before = db.snapshot()
    refused = apply(svc)
    assert refused['failed'] and refused['error_code'] == 'preflight' and refused['untouched'] is True
    assert 'not_in_transaction' in refused['msg'] and refused['applied'] == []
    assert db.snapshot() == before

    checked = apply(svc, check=True)
    assert checked['failed'] and codes(checked['findings'], 'error') == ['not_in_transaction']

    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and ran.get('error_code') != 'preflight'
    assert 'cannot run inside a transaction block' in ran['msg'] or 'cannot be executed' in ran['msg']
    assert ran['applied'] == [] and db.snapshot() == before  # the whole transaction rolled back
    assert status(svc)['pending_migrations'] == [tag]


def test_literals_and_comments_are_not_statements(drizzle_lab):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, (
        '-- CREATE INDEX CONCURRENTLY x ON gen_0001 (id);\n/* VACUUM; /* nested */ ALTER SYSTEM SET x = 1; */\n'
        'INSERT INTO "gen_0001" ("name", "payload") VALUES (\'VACUUM; CREATE DATABASE x\', E\'it\\\'s; VACUUM\');\n'
        '%s\nCREATE FUNCTION preflight_f() RETURNS text LANGUAGE sql AS $body$ SELECT \'DROP INDEX CONCURRENTLY x; '
        'VACUUM\' $body$;\n' % BP))
    entry = status(svc)
    assert codes(entry['findings'], 'error') == []
    result = apply(svc)
    assert not result.get('failed'), result['msg']
    assert result['applied'] == [tag]


def test_enum_label_used_in_the_same_migration(drizzle_lab):
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    tag = add_migration(folder, "ALTER TYPE \"public\".\"mood\" ADD VALUE 'happy';\n%s\n"
                                "ALTER TABLE \"gen_0001\" ADD COLUMN \"m\" mood DEFAULT 'happy';" % BP)
    found = status(svc)['findings']
    assert codes(found, 'error') == ['not_in_transaction']
    assert "'happy'" in found[0]['message'] and 'migration of their own' in found[0]['message']
    for mode in ('all', 'each'):
        ran = apply(svc, transaction=mode, allow_findings=['not_in_transaction'])
        assert ran['failed'] and 'unsafe use of new value' in ran['msg'] and ran['applied'] == []
    assert status(svc)['pending_migrations'] == [tag]


def test_enum_label_used_by_a_later_migration_depends_on_the_transaction_mode(drizzle_lab):
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    first = add_migration(folder, "ALTER TYPE mood ADD VALUE 'happy';")
    second = add_migration(folder, "ALTER TABLE gen_0001 ADD COLUMN m mood DEFAULT 'happy';")
    found = status(svc, transaction='all')['findings']
    errors = [(f['code'], f['migration']) for f in found if f['severity'] == 'error']
    assert errors == [('not_in_transaction', second)]
    assert 'transaction: each' in found[0]['message']
    assert codes(status(svc, transaction='each')['findings'], 'error') == []

    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg'] and ran['applied'] == []
    ok = apply(svc, transaction='each')
    assert not ok.get('failed'), ok['msg']
    assert ok['applied'] == [first, second]


def test_enum_created_in_the_same_transaction(drizzle_lab):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, "CREATE TYPE colour AS ENUM ('red');\n%s\nALTER TYPE colour ADD VALUE 'blue';\n%s\n"
                                "ALTER TABLE gen_0001 ADD COLUMN c colour DEFAULT 'blue';\n%s\n"
                                "ALTER TABLE gen_0000 ADD COLUMN c colour DEFAULT 'red';" % (BP, BP, BP))
    found = status(svc)['findings']
    assert [(f['code'], f['statement']) for f in found if f['severity'] == 'error'] == [
        ('not_in_transaction', "ALTER TABLE gen_0001 ADD COLUMN c colour DEFAULT 'blue'")]
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg']
    assert status(svc)['pending_migrations'] == [tag]


def test_byte_order_mark_found_and_fails_like_drizzle_orm(drizzle_lab, drizzle_peer):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, None, raw=b'\xef\xbb\xbfCREATE TABLE "bom_t" ("id" integer);\n')
    found = status(svc)['findings']
    assert [(f['code'], f['severity'], f['migration']) for f in found if f['source'] != 'squawk'] == [
        ('byte_order_mark', 'error', tag)]
    assert found[0]['statement'] == 'CREATE TABLE "bom_t" ("id" integer);'
    before = db.snapshot()
    refused = apply(svc)
    assert refused['error_code'] == 'preflight' and db.snapshot() == before
    ran = apply(svc, allow_findings=['byte_order_mark'])
    assert ran['failed'] and 'syntax error' in ran['msg'] and ran['applied'] == []
    # drizzle-orm itself sends the BOM and fails the same way
    peer = drizzle_peer.migrate(folder, db.url, check=False)
    assert peer['ok'] is False and peer['error'].startswith('Failed query: \ufeffCREATE TABLE')
    assert db.snapshot() == before


def test_allow_all(drizzle_lab):
    svc, folder, db = drizzle_lab
    add_migration(folder, 'VACUUM;')
    ran = apply(svc, allow_findings=['all'])
    assert ran['failed'] and ran.get('error_code') != 'preflight'


# ------------------------------------------------------------------------------------------------- alembic
@pytest.fixture
def alembic_lab(tmp_path, fresh_db):
    proj = AlembicProject.init(tmp_path / 'dash')
    proj.revision('one', 'r001')
    svc = alembic_service(proj.root, fresh_db.url)
    assert apply(svc)['applied'] == ['r001']
    return proj, svc, fresh_db


def test_revision_id_too_long(alembic_lab):
    proj, svc, db = alembic_lab
    long_id = 'r002_' + 'x' * 35  # 40 characters
    proj.revision('two', long_id)
    found = status(svc)['findings']
    assert [(f['code'], f['migration']) for f in found] == [('revision_id_too_long', long_id)]
    assert 'at most 32' in found[0]['message']
    before = db.snapshot()
    assert apply(svc)['error_code'] == 'preflight' and db.snapshot() == before
    ran = apply(svc, allow_findings=['revision_id_too_long'])
    assert ran['failed'] and 'value too long' in ran['msg'] and ran['applied'] == []
    assert proj.current(db.url) == ['r001']
    # the real length comes from the catalogue: widened, nothing to say, and the run goes through
    db.execute('ALTER TABLE alembic_version ALTER COLUMN version_num TYPE varchar(64)')
    assert status(svc)['findings'] == []
    assert apply(svc)['applied'] == [long_id]


def test_revision_id_too_long_before_the_version_table_exists(tmp_path, fresh_db):
    proj = AlembicProject.init(tmp_path / 'dash')
    long_id = 'a' * 33
    proj.revision('one', long_id)
    svc = alembic_service(proj.root, fresh_db.url)
    assert codes(status(svc)['findings']) == ['revision_id_too_long']


def _write_revision(proj, rev, down):
    path = os.path.join(proj.root, proj.script_dir, 'versions', '%s_hand.py' % rev)
    with open(path, 'w') as fh:
        fh.write('revision = %r\ndown_revision = %r\nbranch_labels = None\ndepends_on = None\n\n\n'
                 'def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n' % (rev, down))
    return path


def test_merge_lists_ancestor(alembic_lab):
    proj, svc, db = alembic_lab
    _write_revision(proj, 'r002', 'r001')
    _write_revision(proj, 'r003', 'r002')
    _write_revision(proj, 'x001', 'r001')
    _write_revision(proj, 'm001', ('r002', 'r003', 'x001'))  # r002 is an ancestor of r003
    entry = status(svc)
    assert entry['status'] == 'pending'
    assert [(f['code'], f['migration'], f['severity']) for f in entry['findings']] == [
        ('merge_lists_ancestor', 'm001', 'error')]
    assert "('r003', 'x001')" in entry['findings'][0]['message']
    # the real alembic CLI fails there
    out = proj.cli('upgrade', 'head', url=db.url, check=False)
    assert out.returncode != 0 and 'KeyError' in out.stderr
    assert proj.current(db.url) == ['r001']
    assert apply(svc)['error_code'] == 'preflight'
    ran = apply(svc, allow_findings=['merge_lists_ancestor'])
    assert ran['failed'] and 'KeyError' in ran['msg'] and ran['applied'] == []
    assert proj.current(db.url) == ['r001']


def test_merge_of_one_real_parent_is_no_error(alembic_lab):
    proj, svc, db = alembic_lab
    _write_revision(proj, 'r002', 'r001')
    _write_revision(proj, 'm001', ('r001', 'r002'))
    assert status(svc)['findings'] == []
    assert apply(svc)['applied'] == ['r002', 'm001']


def test_alembic_concurrently_and_autocommit_block(alembic_lab):
    proj, svc, db = alembic_lab
    proj.revision('two', 'r002')
    proj.edit('r002', upgrade=('    op.create_index("t_r001_note_idx", "t_r001", ["note"], '
                               'postgresql_concurrently=True)\n    op.execute(sa.text("VACUUM t_r001"))\n'))
    found = status(svc)['findings']
    assert [(f['code'], f['migration']) for f in found] == [('not_in_transaction', 'r002')] * 2
    assert 'postgresql_concurrently=True' in found[0]['statement']
    assert 'autocommit_block' in found[0]['message']
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'cannot run inside a transaction block' in ran['msg']
    assert proj.current(db.url) == ['r001']
    proj.edit('r002', upgrade=('    with op.get_context().autocommit_block():\n'
                               '        op.create_index("t_r001_note_idx", "t_r001", ["note"], '
                               'postgresql_concurrently=True)\n        op.execute("VACUUM t_r001")\n'))
    assert status(svc)['findings'] == []
    assert apply(svc)['applied'] == ['r002']


# -------------------------------------------------------------------------------------------------- squawk
@pytest.mark.skipif(preflight.squawk_path() is None, reason='squawk (pip install squawk-cli) is not installed')
def test_squawk_warnings_with_table_sizes(drizzle_lab):
    svc, folder, db = drizzle_lab
    db.execute('CREATE TABLE big_t (id integer, name text)')
    db.execute("INSERT INTO big_t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
    db.execute('ANALYZE big_t')
    db.execute('CREATE TABLE empty_t (id integer, name text)')
    tag = add_migration(folder, 'ALTER TABLE "big_t" ALTER COLUMN "name" TYPE varchar(200);\n%s\n'
                                'ALTER TABLE "empty_t" ALTER COLUMN "name" TYPE varchar(200);' % BP)
    entry = status(svc)
    assert entry['lint'] == {'linter': 'squawk', 'ran': True, 'reason': None}
    lint = [f for f in entry['findings'] if f['source'] == 'squawk']
    assert lint and all(f['severity'] == 'warning' and f['migration'] == tag for f in lint)
    assert len([f for f in lint if f['code'] == 'require-lock-timeout']) == 1  # one per rule, not per statement
    big = [f for f in lint if f['code'] == 'changing-column-type' and 'big_t' in f['statement']]
    empty = [f for f in lint if f['code'] == 'changing-column-type' and 'empty_t' in f['statement']]
    assert big and empty
    assert 'table "big_t": ' in big[0]['message'] and 'about 20000 rows' in big[0]['message']
    assert ' MB' in big[0]['message'] or ' kB' in big[0]['message']
    assert 'table "empty_t": ' in empty[0]['message'] and 'about 0 rows' in empty[0]['message']
    # style rules are no pre-flight finding; a timeout the run sets is none either
    assert not [f for f in lint if f['code'] in preflight.SQUAWK_STYLE_RULES]
    assert 'require-lock-timeout' in codes(lint)
    timed = status(svc, lock_timeout='5s', statement_timeout='10min')['findings']
    assert 'changing-column-type' in codes(timed)
    assert not set(codes(timed)) & {'require-lock-timeout', 'require-statement-timeout'}
    # warnings never refuse a run
    assert not apply(svc).get('failed')


@pytest.mark.skipif(preflight.squawk_path() is None, reason='squawk (pip install squawk-cli) is not installed')
def test_squawk_on_a_table_the_pending_sql_creates_is_info(drizzle_lab):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, 'CREATE TABLE "fresh_t" ("id" integer, "name" varchar(10));\n%s\n'
                                'ALTER TABLE "fresh_t" ALTER COLUMN "name" TYPE varchar(200);' % BP)
    change = [f for f in status(svc)['findings'] if f['code'] == 'changing-column-type']
    assert [(f['migration'], f['severity']) for f in change] == [(tag, 'info')]
    assert 'not in the database yet' in change[0]['message']


def test_without_squawk_the_lint_is_skipped_and_says_why(drizzle_lab, monkeypatch):
    svc, folder, db = drizzle_lab
    monkeypatch.setattr(preflight, 'squawk_path', lambda: None)
    add_migration(folder, 'ALTER TABLE "gen_0001" ADD COLUMN "x" integer;')
    entry = status(svc)
    assert entry['lint']['ran'] is False and 'squawk is not installed' in entry['lint']['reason']
    assert entry['findings'] == []


def test_alembic_is_not_linted_by_default(alembic_lab):
    proj, svc, db = alembic_lab
    proj.revision('two', 'r002')
    entry = status(svc)
    assert entry['lint']['ran'] is False and 'env.py' in entry['lint']['reason']


def test_findings_carry_no_password(tmp_path, fresh_db):
    folder = str(tmp_path / 'migrations')
    generate(folder, 1)
    secret = fresh_db.password
    add_migration(folder, "CREATE ROLE preflight_r LOGIN PASSWORD '%s';\n%s\nVACUUM;" % (secret, BP))
    svc = drizzle_service(tmp_path, fresh_db.password_url)
    entry = status(svc)
    assert codes(entry['findings'], 'error') == ['not_in_transaction']
    text = repr(entry)
    assert secret not in text


def test_preflight_off(drizzle_lab):
    svc, folder, db = drizzle_lab
    add_migration(folder, 'VACUUM;')
    report = build_report([svc[0]], {svc[0]['name']: svc[1]}, plan={'services': None}, preflight=False)
    entry = report['services'][svc[0]['name']]
    assert entry['findings'] == [] and 'lint' not in entry
    assert entry['plan']['changed'] and not entry['plan'].get('failed')
    ran = apply(svc, preflight=False)
    assert ran['failed'] and ran.get('error_code') != 'preflight' and ran['findings'] == []


@pytest.mark.parametrize('down', [b'DROP INDEX CONCURRENTLY "gen_0001_name_idx";\n',
                                  b'\xef\xbb\xbfDROP TABLE "gen_0001";\n'], ids=['concurrently', 'bom'])
def test_a_revert_is_checked_too(drizzle_lab, down):
    svc, folder, db = drizzle_lab
    with open(os.path.join(folder, '0001_calm_nova.down.sql'), 'wb') as fh:
        fh.write(down)
    before = db.snapshot()
    refused = apply(svc, target='-1')
    assert refused['error_code'] == 'preflight' and refused['reverted'] == []
    assert codes(refused['findings']) == ['byte_order_mark' if down.startswith(b'\xef') else 'not_in_transaction']
    assert db.snapshot() == before
    ran = apply(svc, target='-1', allow_findings=['all'])
    assert ran['failed'] and ran.get('error_code') != 'preflight' and ran['reverted'] == []
    assert db.snapshot() == before


def test_alembic_downgrade_is_checked(alembic_lab):
    proj, svc, db = alembic_lab
    proj.edit('r001', downgrade='    op.execute("VACUUM")\n    op.drop_table("t_r001")\n')
    refused = apply(svc, target='base')
    assert refused['error_code'] == 'preflight' and codes(refused['findings']) == ['not_in_transaction']
    assert proj.current(db.url) == ['r001']


def test_alembic_enum_label_used_by_a_later_revision(alembic_lab):
    """alembic runs all revisions of one upgrade in one transaction unless env.py says transaction_per_migration."""
    proj, svc, db = alembic_lab
    env = os.path.join(proj.root, proj.script_dir, 'env.py')
    with open(env) as fh:
        text = fh.read()
    plain = text.replace('    if config.get_main_option("homelab.transaction_per_migration") == "true":\n'
                         '        opts["transaction_per_migration"] = True\n', '')
    assert 'transaction_per_migration' not in plain
    with open(env, 'w') as fh:
        fh.write(plain)
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    proj.revision('two', 'r002')
    proj.edit('r002', upgrade='    op.execute("ALTER TYPE mood ADD VALUE \'happy\'")\n')
    proj.revision('three', 'r003')
    proj.edit('r003', upgrade='    op.execute("CREATE TABLE t_r003 (m mood DEFAULT \'happy\')")\n')
    found = status(svc)['findings']
    assert [(f['code'], f['migration']) for f in found] == [('not_in_transaction', 'r003')]
    assert 'transaction_per_migration' in found[0]['message']
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg']
    assert proj.current(db.url) == ['r001']
    # one transaction per revision: nothing to say, and the run goes through
    with open(env, 'w') as fh:
        fh.write(plain.replace('**_opts())', '**_opts(), transaction_per_migration=True)'))
    assert status(svc)['findings'] == []
    assert apply(svc)['applied'] == ['r002', 'r003']


@pytest.mark.skipif(preflight.squawk_path() is None, reason='squawk (pip install squawk-cli) is not installed')
def test_alembic_sql_is_linted_only_when_the_service_opts_in(alembic_lab):
    proj, svc, db = alembic_lab
    db.execute("INSERT INTO t_r001 (note) SELECT 'n' || g FROM generate_series(1, 5000) g")
    db.execute('ANALYZE t_r001')
    proj.revision('two', 'r002')
    proj.edit('r002', upgrade='    op.alter_column("t_r001", "note", type_=sa.String(20))\n')
    entry = status(svc)
    assert entry['lint']['ran'] is False and 'alembic_sql_preview' in entry['lint']['reason']
    assert entry['findings'] == []
    spec = dict(svc[0], alembic_sql_preview=True)
    opted = status((spec, validate_service(spec)))
    assert opted['lint']['ran'] is True, opted['lint']
    change = [f for f in opted['findings'] if f['code'] == 'changing-column-type']
    assert [(f['migration'], f['source'], f['severity']) for f in change] == [('r002', 'squawk', 'warning')]
    assert 'table t_r001: ' in change[0]['message'] and 'about 5000 rows' in change[0]['message']


# ------------------------------------------------------------------------------------------------ red team
def test_reindex_option_concurrently_off_is_no_error(drizzle_lab):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, 'REINDEX (CONCURRENTLY false) TABLE "gen_0001";\n%s\n'
                                'REINDEX (concurrently off, verbose) TABLE "gen_0000";' % BP)
    assert codes(status(svc)['findings'], 'error') == []
    assert apply(svc)['applied'] == [tag]


def test_enum_add_value_if_not_exists_of_a_label_the_type_has_is_no_error(drizzle_lab):
    """IF NOT EXISTS of a committed label adds nothing: using it afterwards in the same transaction is fine."""
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
    tag = add_migration(folder, "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'happy';\n%s\n"
                                "ALTER TABLE \"gen_0001\" ADD COLUMN \"m\" mood DEFAULT 'happy';" % BP)
    assert codes(status(svc)['findings'], 'error') == []
    assert apply(svc)['applied'] == [tag]


def test_enum_add_value_if_not_exists_of_a_new_label_is_still_an_error(drizzle_lab):
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    add_migration(folder, "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy';\n%s\n"
                          "ALTER TABLE gen_0001 ADD COLUMN m mood DEFAULT 'happy';" % BP)
    assert codes(status(svc)['findings'], 'error') == ['not_in_transaction']
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg'] and ran['applied'] == []


def test_enum_label_spelled_as_plain_text_is_no_error(drizzle_lab):
    """The new label's spelling in a text column, or renamed, is no use of the enum value: PostgreSQL runs it."""
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    db.execute('ALTER TABLE gen_0001 ADD COLUMN m mood')
    tag = add_migration(folder, "ALTER TYPE mood ADD VALUE 'happy';\n%s\n"
                                "INSERT INTO gen_0001 (name, payload) VALUES ('happy', 'happy');\n%s\n"
                                "UPDATE gen_0001 SET payload = 'happy' WHERE name = 'happy';\n%s\n"
                                "ALTER TYPE mood RENAME VALUE 'happy' TO 'glad';" % (BP, BP, BP))
    found = status(svc)['findings']
    assert codes(found, 'error') == []
    assert apply(svc)['applied'] == [tag]


def test_enum_label_renamed_then_used_is_an_error(drizzle_lab):
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    add_migration(folder, "ALTER TYPE mood ADD VALUE 'happy';\n%s\n"
                          "ALTER TYPE mood RENAME VALUE 'happy' TO 'glad';\n%s\n"
                          "SELECT 'glad'::mood;" % (BP, BP))
    found = status(svc)['findings']
    assert [(f['code'], f['statement']) for f in found if f['severity'] == 'error'] == [
        ('not_in_transaction', "SELECT 'glad'::mood")]
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg']


HIDDEN_LABELS = [
    ('hex_escape', "E'happ\\x79'"),
    ('octal_escape', "e'happ\\171'"),
    ('unicode_escape', "E'happ\\u0079'"),
    ('unicode_string', "U&'happ\\0079'"),
    ('unicode_string_uescape', "U&'happ!0079' UESCAPE '!'"),
    ('continued_on_next_line', "'hap'\n  'py'"),
    ('continued_after_a_comment', "E'hap' -- the rest\n'py'"),
]


@pytest.mark.parametrize('literal', [c[1] for c in HIDDEN_LABELS], ids=[c[0] for c in HIDDEN_LABELS])
def test_enum_label_spelled_with_escapes_is_found(drizzle_lab, literal):
    svc, folder, db = drizzle_lab
    db.execute("CREATE TYPE mood AS ENUM ('sad')")
    add_migration(folder, "ALTER TYPE mood ADD VALUE 'happy';\n%s\n"
                          "ALTER TABLE gen_0001 ADD COLUMN m mood DEFAULT %s;" % (BP, literal))
    assert codes(status(svc)['findings'], 'error') == ['not_in_transaction']
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'unsafe use of new value' in ran['msg'] and ran['applied'] == []


CONDITIONAL_UPGRADES = [
    ('other_dialect_branch', '    if op.get_bind().dialect.name == "sqlite":\n        op.execute("VACUUM")\n'
                             '    op.execute("ALTER TABLE t_r001 ADD COLUMN c2 integer")\n'),
    ('helper_never_called', '    def vacuum_later():\n        op.execute("VACUUM t_r001")\n'
                            '    op.execute("ALTER TABLE t_r001 ADD COLUMN c2 integer")\n'),
    ('empty_loop', '    for name in []:\n'
                   '        op.create_index(name, "t_r001", ["note"], postgresql_concurrently=True)\n'
                   '    op.execute("ALTER TABLE t_r001 ADD COLUMN c2 integer")\n'),
]


@pytest.mark.parametrize('upgrade', [c[1] for c in CONDITIONAL_UPGRADES], ids=[c[0] for c in CONDITIONAL_UPGRADES])
def test_alembic_statement_in_code_that_may_not_run_is_no_error(alembic_lab, upgrade):
    """A refused statement in a branch, loop or nested function of upgrade() fails only if that code runs:
    a warning, not an error that blocks a run the real alembic CLI completes."""
    proj, svc, db = alembic_lab
    proj.revision('two', 'r002')
    proj.edit('r002', upgrade=upgrade)
    found = status(svc)['findings']
    assert codes(found, 'error') == []
    assert [(f['code'], f['severity']) for f in found] == [('not_in_transaction', 'warning')]
    assert found[0]['message'].startswith('If it runs')
    out = proj.cli('upgrade', 'head', url=db.url, check=False)
    assert out.returncode == 0, out.stderr
    assert proj.current(db.url) == ['r002']


def test_alembic_statement_after_a_branch_is_still_an_error(alembic_lab):
    proj, svc, db = alembic_lab
    proj.revision('two', 'r002')
    proj.edit('r002', upgrade=('    if op.get_bind().dialect.name == "sqlite":\n        pass\n'
                               '    op.execute("VACUUM")\n'))
    assert codes(status(svc)['findings'], 'error') == ['not_in_transaction']
    ran = apply(svc, allow_findings=['not_in_transaction'])
    assert ran['failed'] and 'cannot run inside a transaction block' in ran['msg']


def test_findings_carry_no_password_in_a_quoted_conninfo_value(drizzle_lab):
    """libpq's quoted value inside a SQL literal: password=''my secret'' (SQL-doubled quotes), E'\\'' escapes."""
    svc, folder, db = drizzle_lab
    add_migration(folder, "CREATE SUBSCRIPTION preflight_s CONNECTION 'host=db password=''Sup3r S3cret'' dbname=x' "
                          "PUBLICATION p;\n%s\nCREATE SUBSCRIPTION preflight_t CONNECTION E'host=db "
                          "password=\\'Sup3r S3cret\\'' PUBLICATION p;" % BP)
    found = status(svc)['findings']
    assert codes(found, 'error') == ['not_in_transaction', 'not_in_transaction']
    assert all(f['statement'].startswith('CREATE SUBSCRIPTION') for f in found if f['severity'] == 'error')
    assert 'S3cret' not in json.dumps(found)
    assert 'S3cret' not in json.dumps(apply(svc, check=True)['findings'])


@pytest.mark.parametrize('sql', [
    "INSERT INTO gen_0001 (name, payload) VALUES ('a', 'first\n--> statement-breakpoint\nsecond');",
    "CREATE FUNCTION preflight_f() RETURNS text LANGUAGE sql AS $f$\n--> statement-breakpoint\nSELECT 'x' $f$;",
    "/* a note\n--> statement-breakpoint\n*/ SELECT 1;",
], ids=['string', 'dollar_body', 'block_comment'])
def test_breakpoint_inside_a_literal_splits_the_statement(drizzle_lab, sql):
    """drizzle-orm splits the file on every '--> statement-breakpoint', inside a literal or comment too: the
    statement it cuts in two fails (unterminated quoted string / comment)."""
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, sql)
    found = status(svc)['findings']
    assert [(f['code'], f['migration']) for f in found if f['severity'] == 'error'] == [
        ('breakpoint_splits_statement', tag)]
    ran = apply(svc, allow_findings=['breakpoint_splits_statement'])
    assert ran['failed'] and 'unterminated' in ran['msg'] and ran['applied'] == []


def test_breakpoint_in_a_line_comment_is_no_error(drizzle_lab):
    svc, folder, db = drizzle_lab
    tag = add_migration(folder, "SELECT 1; -- see --> statement-breakpoint\nSELECT 2;")
    assert codes(status(svc)['findings'], 'error') == []
    assert apply(svc)['applied'] == [tag]
