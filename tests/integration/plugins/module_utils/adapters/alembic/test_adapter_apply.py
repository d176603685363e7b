"""The alembic adapter's write side: it runs the service's own alembic against real PostgreSQL.

After each apply the database must look exactly as a plain `alembic upgrade`/`downgrade` leaves
it (schema dump, rows, `alembic current`), failures must report the partial state truthfully,
the password must stay out of argv and messages, and the alembic child must die with its parent.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import quote

import pytest

from harness.alembic_gen import ALEMBIC, VENV_BIN, AlembicProject, build_branchy, build_linear
from harness.procs import alive
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ApplyError, PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.connection import connect
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl

DASHBOARD = os.path.join(REPO, 'examples', 'homelab', 'services', 'dashboard')
COLLECTIONS = os.path.join(REPO, '.build', 'collections')


def make_adapter(proj, url, **spec):
    base = {'name': 'dash', 'tool': 'alembic', 'path': proj.root, 'alembic_config': proj.ini,
            'alembic_command': [ALEMBIC]}
    base.update(spec)
    return AlembicAdapter(base, DbUrl(url))


def move(adapter, url, target, options=None):
    """read_state -> plan -> apply, as the apply module does (on one connection)."""
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
        plan = adapter.plan(state, target, options)
        result = adapter.apply(conn, plan, options)
        return plan, result
    finally:
        conn.close()


def assert_no_password(text, db):
    assert db.password not in text
    assert quote(db.password, safe='') not in text


@pytest.fixture(scope='module')
def linear(tmp_path_factory):
    return build_linear(str(tmp_path_factory.mktemp('linear') / 'svc'), 4)


@pytest.fixture
def dashboard(tmp_path):
    if not os.path.isdir(os.path.join(DASHBOARD, 'alembic', 'versions')):
        pytest.skip('examples/homelab/services/dashboard is not there')
    root = str(tmp_path / 'dashboard')
    shutil.copytree(DASHBOARD, root, ignore=shutil.ignore_patterns('__pycache__', '.venv'))
    return AlembicProject(root)


def test_dashboard_moves_exactly_like_plain_alembic(dashboard, fresh_db, make_db):
    """Ours (through the adapter) and a reference database (plain alembic) go through the same targets."""
    ref = make_db()
    adapter = make_adapter(dashboard, fresh_db.password_url)
    for target, direction, steps in [
        ('head', 'up', ['001', '002', '003', '004', '005', '006']),
        ('-1', 'down', ['006']),
        ('003', 'down', ['005', '004']),
        ('base', 'down', ['003', '002', '001']),
        ('004', 'up', ['001', '002', '003', '004']),
        ('head', 'up', ['005', '006']),
        ('head', None, []),
    ]:
        plan, result = move(adapter, fresh_db.password_url, target)
        assert (plan.direction, plan.steps) == (direction, steps), target
        if direction == 'up':
            assert (result.applied, result.reverted) == (steps, [])
            dashboard.upgrade(target, ref.password_url)
        elif direction == 'down':
            assert (result.applied, result.reverted) == ([], steps)
            dashboard.downgrade(target, ref.password_url)
        current = dashboard.current(fresh_db.password_url)
        assert current == dashboard.current(ref.password_url)
        assert (result.to_revision or None) == (current[0] if current else None) == plan.to_revision
        assert fresh_db.schema_dump() == ref.schema_dump(), 'schema differs after %s' % target
        assert fresh_db.checksums() == ref.checksums(), 'rows differ after %s' % target
        for query in result.queries:
            assert_no_password(query, fresh_db)


def test_linear_targets_and_nothing_to_do(linear, fresh_db):
    url = fresh_db.password_url
    adapter = make_adapter(linear, url)
    plan, result = move(adapter, url, 'r2')
    assert (plan.direction, result.applied, result.to_revision) == ('up', ['r1', 'r2'], 'r2')
    assert result.queries == ['%s -c alembic.ini upgrade r2' % ALEMBIC]
    plan, result = move(adapter, url, 'r2')
    assert (plan.direction, plan.steps, plan.changed, result.applied, result.reverted) == (None, [], False, [], [])
    plan, result = move(adapter, url, 'heads')
    assert result.applied == ['r3', 'r4'] and linear.current(url) == ['r4']
    plan, result = move(adapter, url, '-2')
    assert (plan.direction, result.reverted, result.to_revision) == ('down', ['r4', 'r3'], 'r2')
    assert linear.current(url) == ['r2']
    assert sorted(t for t in fresh_db.tables() if '.t_' in t) == ['public.t_r1', 'public.t_r2']


def test_branchy_heads_and_back(tmp_path, fresh_db):
    proj = build_branchy(str(tmp_path / 'svc'))
    url = fresh_db.password_url
    adapter = make_adapter(proj, url)
    plan, result = move(adapter, url, 'heads')
    assert sorted(result.applied) == sorted(['a1', 'a2', 'a3', 'b1', 'b2', 'm1', 'a4', 'c1', 'c2'])
    assert sorted(proj.current(url)) == ['a4', 'c2']
    plan, result = move(adapter, url, 'a2')
    assert (plan.direction, set(result.reverted)) == ('down', {'a4', 'm1', 'a3', 'b2', 'b1'})
    assert sorted(proj.current(url)) == ['a2', 'c2']
    assert result.to_revision == plan.to_revision == 'c2'  # the version table row; a2 is c2's dependency


def failing_project(root, transaction_per_migration):
    proj = build_linear(root, 4, transaction_per_migration=transaction_per_migration)
    proj.edit('r3', upgrade='    op.create_table("t_r3", sa.Column("id", sa.Integer))\n    op.execute("SELECT 1/0")\n')
    return proj


def test_failure_half_way_reports_the_partial_upgrade(tmp_path, fresh_db):
    proj = failing_project(str(tmp_path / 'svc'), transaction_per_migration=True)
    url = fresh_db.password_url
    adapter = make_adapter(proj, url)
    with pytest.raises(ApplyError) as err:
        move(adapter, url, 'head')
    exc = err.value
    assert exc.details['applied'] == ['r1', 'r2']
    assert exc.details['reverted'] == []
    assert exc.details['to_revision'] == 'r2'
    assert 'division by zero' in str(exc) and 'got as far as r2' in str(exc)
    assert 'upgrade head failed (exit 1)' in str(exc)
    assert_no_password(str(exc), fresh_db)
    assert_no_password(repr(exc.details), fresh_db)
    assert proj.current(url) == ['r2']
    assert sorted(t for t in fresh_db.tables() if '.t_' in t) == ['public.t_r1', 'public.t_r2']


def test_failure_in_one_transaction_changes_nothing(tmp_path, fresh_db):
    proj = failing_project(str(tmp_path / 'svc'), transaction_per_migration=False)
    url = fresh_db.password_url
    adapter = make_adapter(proj, url)
    with pytest.raises(ApplyError) as err:
        move(adapter, url, 'head')
    assert (err.value.details['applied'], err.value.details['to_revision']) == ([], None)
    assert 'its version table is unchanged at base' in str(err.value)
    assert proj.current(url) == []
    assert [t for t in fresh_db.tables() if '.t_' in t] == []


def test_password_stays_out_of_argv_and_settings_reach_the_session(tmp_path, fresh_db):
    proj = build_linear(str(tmp_path / 'svc'), 2)
    seen = tmp_path / 'cmdline'
    proj.edit('r2', upgrade=(
        '    with open(%r, "wb") as fh:\n'
        '        fh.write(open("/proc/self/cmdline", "rb").read())\n'
        '    op.execute("CREATE TABLE seen AS SELECT current_setting(\'lock_timeout\') AS lt, "\n'
        '               "current_setting(\'statement_timeout\') AS st")\n' % str(seen)))
    url = fresh_db.password_url
    adapter = make_adapter(proj, url)
    options = {'lock_timeout': '1500ms', 'statement_timeout': '7s'}
    plan, result = move(adapter, url, 'head', options)
    assert result.applied == ['r1', 'r2']
    argv = seen.read_bytes().decode().split('\0')
    assert 'upgrade' in argv and 'head' in argv
    assert_no_password(' '.join(argv), fresh_db)
    assert fresh_db.query('SELECT lt, st FROM seen') == [('1500ms', '7s')]


SLEEPY_UPGRADE = ('    import os, time\n'
                  '    with open(os.environ["HOMELAB_TEST_PIDFILE"], "w") as fh:\n'
                  '        fh.write(str(os.getpid()))\n'
                  '    time.sleep(120)\n')


@pytest.fixture
def sleepy(tmp_path):
    proj = build_linear(str(tmp_path / 'svc'), 2)
    proj.edit('r2', upgrade=SLEEPY_UPGRADE)
    return proj


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and open(path).read().strip()):
        assert time.monotonic() < deadline, '%s never appeared' % path
        time.sleep(0.05)
    return int(open(path).read())


def _backends(db):
    return db.query('SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() '
                    'AND pid <> pg_backend_pid()')[0][0]


def test_killing_the_parent_leaves_no_alembic_behind(sleepy, tmp_path, fresh_db):
    pidfile = str(tmp_path / 'alembic.pid')
    spec = {'name': 'dash', 'tool': 'alembic', 'path': sleepy.root, 'alembic_command': [ALEMBIC]}
    code = textwrap.dedent('''
        import sys
        sys.path.insert(0, %r)
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
        from ansible_collections.homelab.migrations.plugins.module_utils.connection import connect
        from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
        url = DbUrl(sys.stdin.readline().strip())
        adapter = AlembicAdapter(%r, url)
        conn = connect(url)
        state = adapter.read_state(conn)
        adapter.apply(conn, adapter.plan(state, 'head'), {})
    ''' % (COLLECTIONS, spec))
    parent = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, text=True,
                              env=dict(os.environ, HOMELAB_TEST_PIDFILE=pidfile))
    parent.stdin.write(fresh_db.password_url + '\n')  # the URL travels on stdin, not argv
    parent.stdin.flush()
    child = _wait_for(pidfile)
    assert alive(child)
    with open('/proc/%d/cmdline' % child, 'rb') as fh:
        assert_no_password(fh.read().decode(), fresh_db)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (alive(child) or _backends(fresh_db)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), 'alembic outlived the process that started it'
    assert _backends(fresh_db) == 0
    assert sleepy.current(fresh_db.url) == []  # its transaction was rolled back


def test_timeout_kills_alembic_and_reports(sleepy, tmp_path, fresh_db, monkeypatch):
    pidfile = str(tmp_path / 'alembic.pid')
    monkeypatch.setenv('HOMELAB_TEST_PIDFILE', pidfile)
    url = fresh_db.password_url
    adapter = make_adapter(sleepy, url)
    start = time.monotonic()
    with pytest.raises(ApplyError) as err:
        move(adapter, url, 'head', {'timeout': 3})
    assert time.monotonic() - start < 60
    assert 'was killed after 3s (timeout)' in str(err.value)
    assert 'its version table is unchanged at base' in str(err.value)
    assert not alive(_wait_for(pidfile, 1))
    assert sleepy.current(fresh_db.url) == []


def test_preview_sql_is_alembics_offline_sql(linear, fresh_db):
    url = fresh_db.password_url
    adapter = make_adapter(linear, url, alembic_sql_preview=True)
    conn = connect(DbUrl(url))
    try:
        plan = adapter.plan(adapter.read_state(conn), 'head')
        sql = adapter.preview_sql(plan)
    finally:
        conn.close()
    for rev in ('r1', 'r2', 'r3', 'r4'):
        assert 'CREATE TABLE t_%s' % rev in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('r1')" in sql
    assert plan.sql == sql
    assert fresh_db.tables() == []  # offline: nothing touched the database
    move(adapter, url, 'head')
    conn = connect(DbUrl(url))
    try:
        plan = adapter.plan(adapter.read_state(conn), '-2')
        sql = adapter.preview_sql(plan)
    finally:
        conn.close()
    assert 'DROP TABLE t_r4' in sql and 'DROP TABLE t_r3' in sql and 't_r2' not in sql
    assert "UPDATE alembic_version SET version_num='r2'" in sql


def test_diff_runs_no_service_code_unless_the_user_opts_in(linear, tmp_path, fresh_db):
    """Issue 13 input 6: --check --diff ran env.py (alembic --sql), which can write to the database."""
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(linear.root, copy.root)
    marker = tmp_path / 'env-py-ran'
    env_py = os.path.join(copy.root, 'alembic', 'env.py')
    with open(env_py) as fh:
        text = fh.read()
    with open(env_py, 'w') as fh:
        fh.write('open(%r, "a").write("ran\\n")\n' % str(marker) + text)
    url = fresh_db.password_url
    for opt_in in (False, True):
        adapter = make_adapter(copy, url, alembic_sql_preview=opt_in)
        conn = connect(DbUrl(url))
        try:
            plan = adapter.plan(adapter.read_state(conn), 'head')
            sql = adapter.preview_sql(plan)
        finally:
            conn.close()
        if not opt_in:
            assert not marker.exists(), 'the default diff ran env.py'
            for rev in ('r1', 'r2', 'r3', 'r4'):
                assert re.search(r'--   %s \(alembic/versions/[^)]+\.py\)' % rev, sql), sql
            assert 'alembic_sql_preview: true' in sql and 'CREATE TABLE' not in sql
        else:
            assert marker.exists() and 'CREATE TABLE t_r1' in sql
    assert fresh_db.tables() == []


def test_preview_falls_back_to_the_revision_list(linear, tmp_path, fresh_db):
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(linear.root, copy.root)
    env_py = os.path.join(copy.root, 'alembic', 'env.py')
    with open(env_py) as fh:
        text = fh.read()
    with open(env_py, 'w') as fh:
        fh.write(text.replace('if context.is_offline_mode():\n    run_migrations_offline()',
                              'if context.is_offline_mode():\n    raise SystemExit("offline mode is not supported")'))
    url = fresh_db.password_url
    adapter = make_adapter(copy, url, alembic_sql_preview=True)
    conn = connect(DbUrl(url))
    try:
        plan = adapter.plan(adapter.read_state(conn), 'r2')
        sql = adapter.preview_sql(plan)
    finally:
        conn.close()
    assert sql.startswith('-- dash: alembic upgrade r2 runs 2 revision(s):\n--   r1 (alembic/versions/')
    assert 'no offline SQL' in sql and 'offline mode is not supported' in sql


def test_command_resolution(linear, tmp_path, fresh_db, monkeypatch):
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(linear.root, copy.root)
    marker = tmp_path / 'service-venv-used'
    os.makedirs(os.path.join(copy.root, '.venv', 'bin'))
    wrapper = os.path.join(copy.root, '.venv', 'bin', 'alembic')
    with open(wrapper, 'w') as fh:
        fh.write('#!/bin/sh\ntouch %s\nexec %s "$@"\n' % (marker, ALEMBIC))
    os.chmod(wrapper, 0o755)
    url = fresh_db.password_url
    spec = {'name': 'dash', 'tool': 'alembic', 'path': copy.root}
    plan, result = move(AlembicAdapter(spec, DbUrl(url)), url, 'r1')
    assert result.queries == ['%s -c alembic.ini upgrade r1' % wrapper] and marker.exists()
    os.unlink(wrapper)
    monkeypatch.setenv('PATH', VENV_BIN + os.pathsep + os.environ.get('PATH', ''))
    plan, result = move(AlembicAdapter(spec, DbUrl(url)), url, 'r2')
    assert result.queries == ['alembic -c alembic.ini upgrade r2'] and result.applied == ['r2']
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(PlanError) as err:  # found by the plan, before anything (a backup, say) is done
        move(AlembicAdapter(spec, DbUrl(url)), url, 'r3')
    assert 'alembic is not on PATH (/nonexistent)' in str(err.value) and 'alembic_command' in str(err.value)
    assert fresh_db.query('SELECT version_num FROM alembic_version') == [('r2',)]
    # found only when it runs (gone between plan and apply): the same advice, nothing changed
    monkeypatch.setenv('PATH', VENV_BIN)
    adapter = AlembicAdapter(spec, DbUrl(url))
    conn = connect(DbUrl(url))
    try:
        plan = adapter.plan(adapter.read_state(conn), 'r3')
        monkeypatch.setenv('PATH', '/nonexistent')
        with pytest.raises(ApplyError) as err:
            adapter.apply(conn, plan)
    finally:
        conn.close()
    assert 'cannot run alembic' in str(err.value) and 'alembic_command' in str(err.value)
    assert err.value.code == 'bad_config'
    assert fresh_db.query('SELECT version_num FROM alembic_version') == [('r2',)]


def test_env_py_that_ignores_database_url_is_caught(linear, tmp_path, fresh_db, make_db):
    other = make_db()
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(linear.root, copy.root)
    env_py = os.path.join(copy.root, 'alembic', 'env.py')
    with open(env_py) as fh:
        text = fh.read()
    with open(env_py, 'w') as fh:
        fh.write(text.replace('import os\n', 'import os\nos.environ["DATABASE_URL"] = %r\n' % other.url, 1))
    url = fresh_db.password_url
    with pytest.raises(ApplyError) as err:
        move(make_adapter(copy, url), url, 'head')
    assert 'succeeded but the version table "alembic_version" now holds nothing, not r4' in str(err.value)
    assert "env.py migrates the database in DATABASE_URL" in str(err.value)
    assert other.query('SELECT version_num FROM alembic_version') == [('r4',)]


def test_env_py_that_keeps_another_version_table_is_caught_and_named(linear, tmp_path, fresh_db):
    """On a fresh database nothing tells the plan that env.py uses another table than version_table; after the run
    the configured table did not move, and the message names the table alembic did move and the settings."""
    url = fresh_db.password_url
    adapter = make_adapter(linear, url, version_table='dash_version')
    with pytest.raises(ApplyError) as err:
        move(adapter, url, 'head')
    assert str(err.value) == (
        '%s -c alembic.ini upgrade head succeeded but the version table "dash_version" now holds nothing, not r4 as '
        'planned; alembic moved "public"."alembic_version" instead (it now holds r4): the service\'s env.py keeps its '
        'version table there, not in "dash_version". Set version_table: alembic_version and no version_table_schema '
        'in the service spec (what env.py passes to context.configure()), or make env.py use "dash_version"' % ALEMBIC)
    assert err.value.details['applied'] == [] and err.value.details['to_revision'] is None
    # from now on status names it before anything runs
    conn = connect(DbUrl(url))
    try:
        state = adapter.read_state(conn)
    finally:
        conn.close()
    assert [p['code'] for p in state.problems] == ['bad_config']
    assert '"public"."alembic_version" holds r4' in state.problems[0]['message']


def test_output_is_masked_before_it_is_cut(linear, tmp_path, fresh_db):
    """Issue 13 input 3: env.py prints its URL and then ~4,000 characters; the cut fell inside the password."""
    copy = AlembicProject(str(tmp_path / 'svc'))
    shutil.copytree(linear.root, copy.root)
    url = fresh_db.password_url
    encoded = quote(fresh_db.password, safe='')
    middle = url.index(encoded) + len(encoded) // 2
    pad = 4000 - (len(url) - middle)
    env_py = os.path.join(copy.root, 'alembic', 'env.py')
    with open(env_py, 'w') as fh:
        fh.write('import os, sys\nsys.stderr.write(os.environ["DATABASE_URL"] + "E" * %d)\nsys.exit(1)\n' % pad)
    with pytest.raises(ApplyError) as err:
        move(make_adapter(copy, url), url, 'head')
    tail = encoded[len(encoded) // 2:]
    for text in (str(err.value), str(err.value.details.get('stderr'))):
        assert tail not in text and fresh_db.password not in text, text[:300]
    assert 'EEEE' in str(err.value)
