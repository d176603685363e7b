"""The libpq URL forms, end to end: status, apply (alembic through its CLI, drizzle in-process) and backup +
restore, with a unix-socket host (``postgresql:///app?host=/socket/dir``), ``options=-c search_path=...`` and
the keyword form. The search_path option puts everything unqualified in schema ``app``: every part of the
collection must reach the same database, as the same user, with the same session options.
"""

from urllib.parse import quote

import pytest

from harness.alembic_gen import ALEMBIC, build_linear
from harness.drizzle_gen import generate, tracking_rows

from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults
from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report

FORMS = ['socket', 'socket-keywords', 'tcp-options']


def url_of(form, pg, db):
    opts = quote('-c search_path=app', safe='')
    if form == 'socket':  # local trust: no password on the socket
        return 'postgresql:///%s?host=%s&port=%d&user=homelab&options=%s' % (
            db.name, quote(pg.tmp, safe=''), pg.port, opts)
    if form == 'socket-keywords':
        return "host=%s port=%d dbname=%s user=homelab options='-c search_path=app'" % (pg.tmp, pg.port, db.name)
    return 'postgresql://homelab:%s@%s:%d/%s?options=%s&application_name=url-forms' % (
        quote(pg.password, safe=''), pg.host, pg.port, db.name, opts)


@pytest.fixture(scope='module')
def alembic_project(tmp_path_factory):
    return build_linear(str(tmp_path_factory.mktemp('urlforms') / 'dash'), 3)


def tables(db):
    return db.query("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")


@pytest.mark.parametrize('form', FORMS)
def test_status_apply_backup_restore_with_each_url_form(form, pg, fresh_db, alembic_project, tmp_path):
    fresh_db.execute('CREATE SCHEMA app AUTHORIZATION homelab')
    url = url_of(form, pg, fresh_db)
    assert DbUrl(url).params['options'] == '-c search_path=app'
    bots = tmp_path / 'bot'
    tags = generate(str(bots / 'migrations'), 3, chain=False)  # drizzle-kit names public in references
    specs = [service_defaults(dict(name='dash', tool='alembic', path=alembic_project.root, database_url=url,
                                   alembic_command=[ALEMBIC])),
             service_defaults(dict(name='bot', tool='drizzle', path=str(bots), database_url=url))]
    report = build_report(specs)
    assert report['services']['dash']['status'] == 'pending', report
    assert report['services']['dash']['pending_migrations'] == ['r1', 'r2', 'r3']
    assert report['services']['bot']['pending_migrations'] == tags

    for spec in specs:
        result = run_apply(spec, DbUrl(url), {'target': 'head'})
        assert result.get('failed') is not True, (result.get('msg'), result.get('error_code'))
        assert result['changed'] is True
    # unqualified objects went where the session's search_path put them; the version table too
    names = [r[0] for r in tables(fresh_db)]
    assert {'app.alembic_version', 'app.t_r1', 'app.t_r3'} <= set(names), names
    assert not [n for n in names if n.startswith('public.')]
    assert fresh_db.query('SELECT version_num FROM app.alembic_version') == [('r3',)]
    assert len(tracking_rows(fresh_db)) == 3
    report = build_report(specs)
    assert report['overall_status'] == 'up_to_date', report

    before = fresh_db.snapshot()
    made = entry.run(dict(database_url=url, dest=str(tmp_path / 'backups'), service='dash'))
    assert made['changed'] is True and made['size_bytes'] > 0
    fresh_db.execute('UPDATE app.t_r1 SET note = 1::text; DROP TABLE app.t_r3')
    restored = entry.run(dict(database_url=url, state='restored', path=made['path']))
    assert restored['changed'] is True
    assert fresh_db.snapshot() == before

    # and back down through alembic's CLI with the same URL
    result = run_apply(specs[0], DbUrl(url), {'target': 'r1'})
    assert result.get('failed') is not True, result
    assert result['reverted'] == ['r3', 'r2']
    assert fresh_db.query('SELECT version_num FROM app.alembic_version') == [('r1',)]
