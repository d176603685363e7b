"""The alembic adapter's read side against real PostgreSQL and the real alembic CLI.

Histories are made by `alembic revision` / `alembic merge` (tests/harness/alembic_gen.py); the
database is moved with `alembic upgrade`/`stamp`; what the adapter says is compared with what
`alembic heads`, `alembic history`, `alembic current` print and with the revisions a real
`alembic upgrade`/`downgrade` runs (its log, or its `--sql` output).
"""

import os
import shutil

import pytest

from harness.alembic_gen import ALEMBIC, AlembicCliError, AlembicProject, build_branchy, ran

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.connection import connect
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl


def adapter_for(proj, url, **spec):
    base = {'name': 'dash', 'tool': 'alembic', 'path': proj.root, 'alembic_config': proj.ini,
            'alembic_command': [ALEMBIC], 'version_table': 'alembic_version', 'version_table_schema': None}
    base.update(spec)
    return AlembicAdapter(base, DbUrl(url))


def read(proj, url, **spec):
    conn = connect(DbUrl(url))
    try:
        return adapter_for(proj, url, **spec).read_state(conn)
    finally:
        conn.close()


@pytest.fixture(scope='module')
def branchy(tmp_path_factory):
    return build_branchy(str(tmp_path_factory.mktemp('branchy') / 'svc'))


def test_heads_and_history_as_alembic_prints_them(branchy, fresh_db):
    state = read(branchy, fresh_db.password_url)
    assert state.heads == branchy.heads() == ['a4', 'c2']
    assert state.history == list(reversed(branchy.history()))
    assert state.current == [] and state.applied == []
    assert state.detail.version_table_exists is False
    codes = [p['code'] for p in state.problems]
    assert codes == ['multiple_heads']
    assert 'a4, c2' in state.problems[0]['message']


# each point: the `alembic upgrade` targets that put the database there
POINTS = [[], ['a2'], ['b1'], ['a3'], ['c1'], ['b2', 'a3'], ['m1'], ['c2'], ['a3', 'c2'], ['a4'], ['heads']]


@pytest.mark.parametrize('point', POINTS, ids=['+'.join(p) or 'empty' for p in POINTS])
def test_current_applied_and_pending_match_a_real_upgrade(branchy, make_db, point):
    db = make_db()
    url = db.password_url
    for target in point:
        branchy.upgrade(target, url)
    state = read(branchy, url)
    rows = [r[0] for r in db.query('SELECT version_num FROM alembic_version')] if point else []
    assert sorted(state.current) == sorted(rows)
    # `alembic current` also lists revisions a dependency kept out of the table (c2 depends on a2)
    assert sorted(state.detail.graph.all_current(state.current)) == sorted(branchy.current(url))
    # applied = what the schema shows: one table per applied revision
    tables = sorted(t.split('.')[-1][2:] for t in db.tables() if t.split('.')[-1].startswith('t_'))
    assert sorted(state.applied) == tables
    # pending = what `alembic upgrade heads` really runs, in its order
    proc = branchy.upgrade('heads', url)
    assert ran(proc.stderr) == state.pending
    after = read(branchy, url)
    assert after.pending == []
    assert sorted(after.current) == ['a4', 'c2']
    assert sorted(after.applied) == sorted(state.history)


# from all heads, downgrade targets: our plan against what `alembic downgrade` runs
DOWN_TARGETS = ['a2', 'm1', 'b1', 'c1', 'aux@base', 'a1', 'base', 'c2', 'aux@-1']


@pytest.mark.parametrize('target', DOWN_TARGETS)
def test_downgrade_plans_match_alembic(branchy, make_db, target):
    db = make_db()
    url = db.password_url
    branchy.upgrade('heads', url)
    adapter = adapter_for(branchy, url)
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
        plan = adapter.plan(state, target)
        proc = branchy.downgrade(target, url)
        assert ran(proc.stderr) == plan.steps
        after = adapter.read_state(conn)
    finally:
        conn.close()
    if plan.steps:
        assert plan.direction == 'down'
    assert (after.current_revision or None) == plan.to_revision
    assert sorted(after.detail.graph.all_current(after.current)) == sorted(branchy.current(url))


UP_TARGETS = [('a1', 'a3'), ('a2', 'b2'), ('a3', 'm1'), ('base', 'c2'), ('a3', 'aux@head'), ('c1', 'a2'),
              ('a3', '+1'), ('a3', 'heads')]


@pytest.mark.parametrize('start,target', UP_TARGETS, ids=['%s-to-%s' % t for t in UP_TARGETS])
def test_upgrade_plans_match_alembic(branchy, make_db, start, target):
    db = make_db()
    url = db.password_url
    if start != 'base':
        branchy.upgrade(start, url)
    adapter = adapter_for(branchy, url)
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
        plan = adapter.plan(state, target)
        proc = branchy.upgrade(target, url)
        assert ran(proc.stderr) == plan.steps
        after = adapter.read_state(conn)
    finally:
        conn.close()
    assert plan.direction == 'up' and plan.steps
    assert after.current_revision == plan.to_revision
    # at the target now: nothing to do
    conn = connect(DbUrl(url))
    try:
        again = adapter.plan(adapter.read_state(conn), target if not target.startswith('+') else plan.to_revision)
    finally:
        conn.close()
    assert (again.direction, again.steps) == (None, [])


def test_ambiguous_targets_are_refused_with_advice(branchy, fresh_db):
    url = fresh_db.password_url
    branchy.upgrade('heads', url)
    adapter = adapter_for(branchy, url)
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
        with pytest.raises(PlanError) as err:
            adapter.plan(state, 'head')
        assert 'use target heads' in str(err.value) and 'a4, c2' in str(err.value)
        assert err.value.code == 'multiple_heads'
        with pytest.raises(PlanError) as err:
            adapter.plan(state, '-1')
        assert 'several heads' in str(err.value)
        with pytest.raises(PlanError) as err:
            adapter.plan(state, 'zzzz')
        assert "No such revision or branch 'zzzz'" in str(err.value)
    finally:
        conn.close()
    assert fresh_db.password not in str(err.value)


def test_revision_files_are_never_executed(branchy, tmp_path, fresh_db):
    """Every revision imports a module that does not exist: alembic itself cannot load them, status can."""
    url = fresh_db.password_url
    branchy.upgrade('a3', url)
    expected = read(branchy, url)
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(branchy.root, copy.root)
    marker = tmp_path / 'executed'
    for path in copy.files():
        with open(path) as fh:
            text = fh.read()
        with open(path, 'w') as fh:
            fh.write('import homelab_module_that_is_not_installed  # noqa\nopen(%r, "w").close()\n%s'
                     % (str(marker), text))
    with pytest.raises(AlembicCliError) as err:
        copy.heads()
    assert "No module named 'homelab_module_that_is_not_installed'" in str(err.value)
    state = read(copy, url)
    assert not marker.exists()
    assert (state.heads, state.history, state.current, state.applied, state.pending) == \
        (expected.heads, expected.history, expected.current, expected.applied, expected.pending)


def test_custom_version_table_and_schema(tmp_path, fresh_db):
    fresh_db.execute('CREATE SCHEMA meta')
    proj = AlembicProject.init(str(tmp_path / 'svc'), version_table='dash_version', version_table_schema='meta')
    proj.revision('one', 'v1')
    proj.revision('two', 'v2')
    url = fresh_db.password_url
    proj.upgrade('v1', url)
    state = read(proj, url, version_table='dash_version', version_table_schema='meta')
    assert (state.current, state.applied, state.pending) == (['v1'], ['v1'], ['v2'])
    assert state.detail.version_table == '"meta"."dash_version"'
    # the default table does not exist there: nothing applied as far as it tells, and the table that holds
    # this service's revisions is named, with the settings that read it
    default = read(proj, url)
    assert (default.current, default.pending, default.detail.version_table_exists) == ([], ['v1', 'v2'], False)
    assert [p['code'] for p in default.problems] == ['bad_config']
    message = default.problems[0]['message']
    assert message.startswith('the version table "alembic_version" does not exist, but "meta"."dash_version" holds v1')
    assert 'Set version_table: dash_version and version_table_schema: meta in the service spec' in message


def test_a_version_table_env_py_does_not_use_is_a_config_error(tmp_path, fresh_db):
    """version_table names a table env.py does not use: the real one holds this service's revisions, so status says
    so and the plan refuses (instead of planning every revision, which the service's alembic would apply on top)."""
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    for i in (1, 2, 3):
        proj.revision('step %d' % i, 'v%d' % i)
    url = fresh_db.password_url
    proj.upgrade('v2', url)
    # another service's version table in the same database: its revisions are not ours, it is not mentioned
    fresh_db.execute("CREATE TABLE other_app_version (version_num varchar(32) NOT NULL PRIMARY KEY); "
                     "INSERT INTO other_app_version VALUES ('feedface')")
    state = read(proj, url, version_table='alembic_versions')
    assert state.current == [] and state.pending == ['v1', 'v2', 'v3']
    assert state.problems == [{'code': 'bad_config', 'message': (
        'the version table "alembic_versions" does not exist, but "public"."alembic_version" holds v2; that is most '
        "likely where the service's env.py keeps its version table, and `alembic upgrade` would move that one while "
        'this collection reads "alembic_versions" as nothing applied. Set version_table: alembic_version and no '
        'version_table_schema in the service spec (the version_table / version_table_schema that env.py passes to '
        'context.configure()), or make env.py use "alembic_versions"')}]
    conn = connect(DbUrl(url))
    try:
        with pytest.raises(PlanError) as err:
            adapter_for(proj, url, version_table='alembic_versions').plan(state, 'head')
    finally:
        conn.close()
    assert err.value.code == 'bad_config' and '"public"."alembic_version" holds v2' in str(err.value)
    # an empty configured table is read the same way; the right settings read cleanly
    fresh_db.execute('CREATE TABLE alembic_versions (version_num varchar(32) NOT NULL PRIMARY KEY)')
    empty = read(proj, url, version_table='alembic_versions')
    assert empty.problems[0]['message'].startswith('the version table "alembic_versions" is empty, but ')
    right = read(proj, url)
    assert (right.current, right.pending, right.problems) == (['v2'], ['v3'], [])
    # a fresh database, or one where only other services' tables exist: nothing to say
    fresh_db.execute('DROP TABLE alembic_version')
    assert read(proj, url).problems == []


def test_an_undecodable_applied_revision_is_named(tmp_path, fresh_db):
    """Status reads only the heads of applied files, but one with a byte Python cannot decode breaks every
    `alembic` command: it is a bad_config problem naming the file, and the plan refuses."""
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    proj.revision('one', 'u1')
    proj.revision('two', 'u2')
    url = fresh_db.password_url
    proj.upgrade('u1', url)
    path = proj.edit('u1', upgrade="    op.execute(\"COMMENT ON TABLE t_u1 IS 'caf\u00e9'\")\n")
    with open(path, 'rb') as fh:
        data = fh.read()
    with open(path, 'wb') as fh:
        fh.write(data.replace('caf\u00e9'.encode('utf-8'), b'caf\xe9'))
    with pytest.raises(AlembicCliError) as cli:  # alembic itself cannot even list the revisions
        proj.heads()
    assert 'SyntaxError' in str(cli.value)
    state = read(proj, url)
    assert state.current == ['u1']
    bad = [p for p in state.problems if p['code'] == 'bad_config']
    assert len(bad) == 1 and bad[0]['message'].startswith(path + ' is not valid UTF-8 (byte 0xe9 on line ')
    conn = connect(DbUrl(url))
    try:
        with pytest.raises(PlanError) as err:
            adapter_for(proj, url).plan(state, 'head')
    finally:
        conn.close()
    assert path in str(err.value) and err.value.code == 'bad_config'


def test_a_pending_revision_without_upgrade_is_named(tmp_path, fresh_db):
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    proj.revision('one', 'w1')
    proj.revision('two', 'w2')
    url = fresh_db.password_url
    proj.upgrade('w1', url)
    path = proj.file_of('w2')
    with open(path) as fh:
        text = fh.read()
    with open(path, 'w') as fh:
        fh.write(text.replace('def upgrade()', 'def upgrade_schema()'))
    state = read(proj, url)
    assert state.pending == ['w2']
    bad = [p['message'] for p in state.problems if p['code'] == 'bad_config']
    assert bad == ['%s has no module-level upgrade(), so `alembic upgrade` would fail on revision w2 before running '
                   'anything; define `def upgrade():` in it (with `pass` as its body if there is nothing to do)' % path]
    # alembic agrees, and fails before it changes anything
    before = fresh_db.schema_dump()
    proc = proj.upgrade('head', url, check=False)
    assert proc.returncode != 0 and "has no attribute 'upgrade'" in proc.stderr
    assert fresh_db.schema_dump() == before and proj.current(url) == ['w1']
    conn = connect(DbUrl(url))
    try:
        with pytest.raises(PlanError) as err:
            adapter_for(proj, url).plan(state, 'head')
    finally:
        conn.close()
    assert err.value.code == 'bad_config' and 'has no module-level upgrade()' in str(err.value)


def test_a_configured_command_that_cannot_run_is_a_status_problem(tmp_path, fresh_db, monkeypatch):
    """A configured path (alembic_command, or .venv/bin/alembic) that cannot run is a fact of the host: status
    shows it. `alembic` looked up on PATH depends on the caller's environment: only the plan checks it."""
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    proj.revision('one', 'c1')
    url = fresh_db.password_url
    state = read(proj, url, alembic_command=['/nonexistent/bin/alembic'])
    assert state.pending == ['c1']
    assert state.problems == [{'code': 'bad_config', 'message': (
        "alembic_command /nonexistent/bin/alembic cannot be run: /nonexistent/bin/alembic does not exist; set "
        "alembic_command to the service's own alembic (e.g. ['%s/.venv/bin/alembic']), or leave it out to use "
        "%s/.venv/bin/alembic (or, without it, alembic from PATH)" % (proj.root, proj.root))}]
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    state = read(proj, url, alembic_command=None)
    assert state.problems == []
    conn = connect(DbUrl(url))
    try:
        with pytest.raises(PlanError) as err:
            adapter_for(proj, url, alembic_command=None).plan(state, 'head')
    finally:
        conn.close()
    assert 'alembic is not on PATH (%s)' % (tmp_path / 'empty') in str(err.value)


def test_unknown_revision_in_the_version_table(branchy, fresh_db):
    url = fresh_db.password_url
    branchy.upgrade('a2', url)
    fresh_db.execute("UPDATE alembic_version SET version_num = 'feedbeef'")
    adapter = adapter_for(branchy, url)
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
        assert state.current == ['feedbeef']
        unknown = [p for p in state.problems if p['code'] == 'unknown_revision']
        assert len(unknown) == 1 and "'feedbeef'" in unknown[0]['message']
        assert state.pending == []
        with pytest.raises(PlanError) as err:
            adapter.plan(state, 'heads')
        assert err.value.code == 'unknown_revision'
    finally:
        conn.close()


def test_bad_config_is_a_problem_not_a_traceback(tmp_path, fresh_db):
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    proj.revision('one', 'x1')
    proj.revision('two', 'x2')
    url = fresh_db.password_url
    proj.upgrade('x1', url)
    path = proj.file_of('x1')
    with open(path) as fh:
        text = fh.read()
    with open(path, 'w') as fh:
        fh.write(text.replace("down_revision: Union[str, Sequence[str], None] = None",
                              "down_revision: Union[str, Sequence[str], None] = 'x2'"))
    state = read(proj, url)
    assert state.current == ['x1']  # the version table is still read
    bad = [p for p in state.problems if p['code'] == 'bad_config']
    assert bad and 'Cycle is detected' in bad[0]['message'] and path in bad[0]['message']
    with pytest.raises(AlembicCliError):  # alembic agrees that this is broken
        proj.heads()
    # a missing ini
    state = read(proj, url, alembic_config='nope.ini')
    assert state.problems[0]['code'] == 'bad_config'
    assert os.path.join(proj.root, 'nope.ini') in state.problems[0]['message']


def test_a_pending_file_with_a_syntax_error_is_named(tmp_path, fresh_db):
    proj = AlembicProject.init(str(tmp_path / 'svc'))
    proj.revision('one', 's1')
    proj.revision('two', 's2')
    url = fresh_db.password_url
    proj.upgrade('s1', url)
    path = proj.edit('s2', upgrade='    op.execute("SELECT 1"\n')
    state = read(proj, url)
    assert state.pending == ['s2']
    bad = [p for p in state.problems if p['code'] == 'bad_config']
    assert len(bad) == 1 and bad[0]['message'].startswith(path) and 'not valid Python' in bad[0]['message']


# ------------------------------------------------------------------------- long histories
@pytest.fixture(scope='module')
def long_history(tmp_path_factory):
    """520 linear revisions (alembic's own generate_revision in-process), then a branch and a merge by the CLI."""
    proj = AlembicProject.init(str(tmp_path_factory.mktemp('long') / 'svc'))
    proj.bulk_linear(520, body=False)
    proj.revision('side branch', 'side1', head='r00300', splice=True, body=False)
    proj.revision('side two', 'side2', head='side1', body=False)
    proj.merge(['r00520', 'side2'], 'merge side', 'merge1', body=False)
    return proj


def test_long_history_matches_alembic(long_history, fresh_db):
    url = fresh_db.password_url
    long_history.cli('stamp', 'r00250', url=url)
    state = read(long_history, url)
    assert len(state.history) == 523
    assert state.heads == long_history.heads() == ['merge1']
    assert state.history == list(reversed(long_history.history()))
    assert state.current == ['r00250'] and len(state.applied) == 250
    sql = long_history.upgrade_sql('r00250:heads')
    assert ran(sql) == state.pending
    assert len(state.pending) == 273 and state.pending[-1] == 'merge1'


def test_status_of_2000_revisions(tmp_path_factory, fresh_db):
    """A 2,000-revision history half applied (its speed against the CLI is row 2 of `make bench`)."""
    proj = AlembicProject.init(str(tmp_path_factory.mktemp('big') / 'svc'))
    proj.bulk_linear(2000)
    url = fresh_db.password_url
    proj.cli('stamp', 'r01000', url=url)
    adapter = adapter_for(proj, url)
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
    finally:
        conn.close()
    assert (len(state.applied), len(state.pending), state.heads) == (1000, 1000, ['r02000'])
    assert state.current == proj.current(url) == ['r01000']
    assert state.pending[0] == 'r01001' and state.pending[-1] == 'r02000'


def test_pyproject_template_project(tmp_path, fresh_db):
    """`alembic init -t pyproject`: script_location lives in [tool.alembic] of pyproject.toml."""
    proj = AlembicProject.init(str(tmp_path / 'svc'), template='pyproject')
    proj.revision('one', 'p1')
    proj.revision('two', 'p2', branch_label='main')
    proj.revision('three', 'p3', head='main@head')
    state = read(proj, fresh_db.password_url)
    assert state.detail.config.script_location == os.path.join(proj.root, 'alembic')
    assert state.heads == proj.heads() == ['p3']
    assert state.history == list(reversed(proj.history())) == ['p1', 'p2', 'p3']
    assert state.pending == ['p1', 'p2', 'p3'] and state.problems == []
