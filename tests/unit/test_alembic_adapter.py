"""Unit tests of the alembic adapter's read side helpers and its child-process runner.

No database here; the checks compare with the real alembic library (its Config, ScriptDirectory
and module loading) run in-process on files in a temp directory.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from harness.procs import alive

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.command import (
    AlembicCommand, command_problem, pg_setting)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.detail import AlembicStateDetail
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import (
    check_source_encoding, fast_values, list_revision_files, revision_from_file)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import (
    FileError, Unread, full_values, to_tuple)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError, PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child

from alembic.config import Config
from alembic.runtime.migration import MigrationStep
from alembic.script import Script, ScriptDirectory

ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')

TEMPLATE = '''\
"""{message}

Revision ID: {rev}
Revises: {down}
Create Date: 2025-01-01 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = {labels!r}
depends_on: Union[str, Sequence[str], None] = {deps!r}


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("SELECT 1")


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''


def template(rev, down=None, labels=None, deps=None, message='a revision'):
    return TEMPLATE.format(rev=rev, down=down, labels=labels, deps=deps, message=message)


def values_of(text):
    data = text.encode('utf-8') if isinstance(text, str) else text
    fast = fast_values(data)
    try:
        full = full_values(data)
    except FileError as exc:
        full = exc
    return fast, full


# ------------------------------------------------------------------ fast path vs the full AST
# (name, source, expected values or None for "the full parse reports a problem", fast path expected?)
CASES = [
    ('template', template('abc123', 'def456'),
     {'revision': 'abc123', 'down_revision': 'def456', 'branch_labels': None, 'depends_on': None}, True),
    ('merge tuple', template('m1', ('a', 'b')),
     {'revision': 'm1', 'down_revision': ('a', 'b'), 'branch_labels': None, 'depends_on': None}, True),
    ('labels and deps', template('c1', None, ('aux',), 'a2'),
     {'revision': 'c1', 'down_revision': None, 'branch_labels': ('aux',), 'depends_on': 'a2'}, True),
    ('plain old style', "revision = '001'\ndown_revision = None\n\ndef upgrade():\n    pass\n",
     {'revision': '001', 'down_revision': None}, True),
    ('crlf', template('r1', 'r0').replace('\n', '\r\n'),
     {'revision': 'r1', 'down_revision': 'r0', 'branch_labels': None, 'depends_on': None}, True),
    ('multi-line list', "revision = 'm'\ndown_revision = [\n    'a',\n    'b',\n]\n",
     {'revision': 'm', 'down_revision': ['a', 'b']}, True),
    ('trailing comments', "revision = 'a'  # the id\ndown_revision = None # base\n",
     {'revision': 'a', 'down_revision': None}, True),
    ('docstring that looks like code', '"""x\nrevision = \'fake\'\n"""\nrevision = \'real\'\ndown_revision = None\n',
     {'revision': 'real', 'down_revision': None}, True),
    ('parenthesised string', "revision = ('abc')\ndown_revision = ('a',)\n",
     {'revision': 'abc', 'down_revision': ('a',)}, True),
    ('reassigned at the bottom', "revision = 'a'\ndown_revision = None\ndef upgrade():\n    pass\nrevision = 'b'\n",
     {'revision': 'b', 'down_revision': None}, False),
    ('tuple unpacking', "revision, down_revision = 'a', None\n", {'revision': 'a', 'down_revision': None}, False),
    ('chained', "revision = 'a'\ndown_revision = branch_labels = None\n",
     {'revision': 'a', 'down_revision': None, 'branch_labels': None}, False),
    ('implicit concatenation', "revision = 'ab' 'cd'\ndown_revision = None\n",
     {'revision': 'abcd', 'down_revision': None}, False),
    ('escapes', "revision = 'a\\x62'\ndown_revision = None\n", {'revision': 'ab', 'down_revision': None}, False),
    ('continuation line', "revision = 'a'\ndown_revision = \\\n    'z'\n", {'revision': 'a', 'down_revision': 'z'},
     False),
    ('annotation first, value later', "revision: str\nrevision = 'a'\ndown_revision = None\n",
     {'revision': 'a', 'down_revision': None}, False),
    ('class attribute ignored', "revision = 'a'\ndown_revision = None\nclass X:\n    revision = 'zz'\n",
     {'revision': 'a', 'down_revision': None}, False),
    ('word in a body string', "revision = 'a'\ndown_revision = None\ndef upgrade():\n"
     "    op.execute('UPDATE revision SET x = 1')\n", {'revision': 'a', 'down_revision': None}, False),
    ('latin-1 cookie', b"# -*- coding: latin-1 -*-\n\"\"\"caf\xe9\"\"\"\nrevision = 'a'\ndown_revision = None\n",
     {'revision': 'a', 'down_revision': None}, False),
    ('bom', b"\xef\xbb\xbfrevision = 'a'\ndown_revision = None\n", {'revision': 'a', 'down_revision': None}, False),
    ('semicolons', "revision = 'a'; down_revision = None\n", {'revision': 'a', 'down_revision': None}, False),
    # problems: the full parse names them
    # not literal, not `revision`: read later (resolve_unread), or a warning; never a broken file here
    ('call', "revision = 'a'\ndown_revision = compute()\n", ('unread', 'down_revision', 2), False),
    ('f-string', "revision = f'a{1}'\ndown_revision = None\n", None, False),
    ('concatenation with +', "revision = 'a' + 'b'\ndown_revision = None\n", None, False),
    ('conditional', "revision = 'a'\ndown_revision = None\nif X:\n    down_revision = 'b'\n",
     ('unread', 'down_revision', 4), False),
    ('try block', "try:\n    revision = 'a'\nexcept Exception:\n    pass\ndown_revision = None\n", None, False),
    ('import binding', "from elsewhere import revision\ndown_revision = None\n", None, False),
    ('walrus', "(revision := 'a')\ndown_revision = None\n", None, False),
    ('del', "revision = 'a'\ndown_revision = None\ndel down_revision\n", ('unread', 'down_revision', 3), False),
    ('def', "revision = 'a'\ndown_revision = None\ndef depends_on():\n    pass\n", ('unread', 'depends_on', 3),
     False),
    ('augmented', "revision = 'a'\ndown_revision = None\ndepends_on = ()\ndepends_on += ('x',)\n",
     ('unread', 'depends_on', 4), False),
    ('label from a constant', "revision = 'a'\ndown_revision = None\nbranch_labels = (cli.EXPAND,)\n",
     ('unread', 'branch_labels', 3), False),
    ('star unpacking', "revision, *down_revision = 'a', 'b'\n", None, False),
    ('unpacking a call', "revision, down_revision = f()\n", None, False),
    ('syntax error in the value', "revision = 'a\ndown_revision = None\n", None, False),
    ('indented start', "    revision = 'a'\ndown_revision = None\n", None, False),
]


@pytest.mark.parametrize('name,source,expected,fast_used', CASES, ids=[c[0] for c in CASES])
def test_fast_path_agrees_with_full_ast(name, source, expected, fast_used):
    fast, full = values_of(source)
    if isinstance(expected, tuple):
        assert fast is None, 'the fast path must not accept %s' % name
        _kind, rev_name, line = expected
        assert isinstance(full[rev_name], Unread) and full[rev_name].lineno == line
        return
    if expected is None:
        assert fast is None, 'the fast path must not accept %s' % name
        assert isinstance(full, FileError)
        assert 'line' in str(full) or 'not valid Python' in str(full)
        return
    assert full == expected
    if fast_used:
        assert fast == expected
    else:
        assert fast is None


def test_fast_path_skips_the_body_but_files_to_run_get_a_full_parse(tmp_path):
    source = template('r1', None).replace('op.execute("SELECT 1")', 'op.execute("SELECT 1"')  # broken body
    fast, full = values_of(source)
    assert fast == {'revision': 'r1', 'down_revision': None, 'branch_labels': None, 'depends_on': None}
    assert isinstance(full, FileError) and 'not valid Python (line 23)' in str(full)
    project = make_project(tmp_path, {'r1.py': source})
    graph = RevisionGraph(AlembicConfig(str(project), 'alembic.ini'))
    assert graph.ok
    problems = graph.syntax_problems(['r1'])
    assert len(problems) == 1 and problems[0].startswith(os.path.join(str(project), 'alembic', 'versions', 'r1.py'))
    assert 'line 23' in problems[0]


# the same sources through alembic's own loader (this executes them: fine in a test)
LOADABLE = [c for c in CASES if c[2] is not None and 'revision' in c[2] and isinstance(c[2]['revision'], str)]


@pytest.mark.parametrize('name,source,expected,fast_used', LOADABLE, ids=[c[0] for c in LOADABLE])
def test_revision_objects_match_alembics_own_loader(tmp_path, name, source, expected, fast_used):
    versions = tmp_path / 'versions'
    versions.mkdir()
    path = versions / 'rev_file.py'
    path.write_bytes(source.encode('utf-8') if isinstance(source, str) else source)
    sd = ScriptDirectory(str(tmp_path))
    try:
        script = Script._from_path(sd, str(path))
    except Exception as exc:  # alembic cannot load it either (e.g. names that do not exist)
        pytest.skip('alembic cannot load this source: %s' % exc)
    ours = revision_from_file(str(path))
    assert ours.revision == script.revision
    assert ours.down_revision == script.down_revision
    assert ours.dependencies == script.dependencies
    assert ours.branch_labels == script.branch_labels


# --------------------------------------------------------------------------- project helpers
def make_project(root, files, ini=None, versions='alembic/versions'):
    root = os.fspath(root)
    os.makedirs(os.path.join(root, 'alembic'), exist_ok=True)
    with open(os.path.join(root, 'alembic.ini'), 'w') as fh:
        fh.write(ini if ini is not None else '[alembic]\nscript_location = %(here)s/alembic\npath_separator = os\n')
    for rel, text in files.items():
        path = os.path.join(root, versions, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as fh:
            fh.write(text.encode('utf-8') if isinstance(text, str) else text)
    return root


def alembic_order(root, ini='alembic.ini'):
    """Revision file paths in the order alembic's ScriptDirectory loads them (executes the files)."""
    old = os.getcwd()
    os.chdir(root)
    try:
        cfg = Config(os.path.join(root, ini))
        sd = ScriptDirectory.from_config(cfg)
        return [str(s.path) for s in sd._load_revisions()]
    finally:
        os.chdir(old)


def test_file_listing_matches_scriptdirectory(tmp_path):
    files = {
        'b_second.py': template('b', 'a'),
        'a_first.py': template('a'),
        '__init__.py': '',
        '.#a_first.py': 'not python at all (an editor lock file)',
        'notes.txt': 'not a revision',
        'sub/c_third.py': template('c', 'b'),
        'sub/deeper/d_fourth.py': template('d', 'c'),
        'sub/__init__.py': '',
        'zz/e_fifth.py': template('e', 'd'),
    }
    ini = ('[alembic]\nscript_location = alembic\npath_separator = os\nrecursive_version_locations = true\n')
    root = make_project(tmp_path, files, ini=ini)
    os.symlink(os.path.join(root, 'alembic/versions/a_first.py'), os.path.join(root, 'alembic/versions/link.py'))
    config = AlembicConfig(root, 'alembic.ini')
    assert config.recursive is True
    ours, unreadable = list_revision_files(config)
    assert unreadable == []
    expected = alembic_order(root)
    assert ours == expected
    assert [os.path.basename(p) for p in ours] == ['a_first.py', 'b_second.py', 'c_third.py', 'd_fourth.py',
                                                   'e_fifth.py']
    # without recursion only the first level counts, for both
    with open(os.path.join(root, 'alembic.ini'), 'w') as fh:
        fh.write(ini.replace('true', 'false'))
    ours, _errors = list_revision_files(AlembicConfig(root, 'alembic.ini'))
    assert [os.path.basename(p) for p in ours] == ['a_first.py', 'b_second.py']


@pytest.mark.parametrize('separator_line,value,names', [
    ('path_separator = os', '%(here)s/v1:%(here)s/v2', ['v1', 'v2']),
    ('path_separator = ;', '%(here)s/v1; %(here)s/v2', ['v1', 'v2']),
    ('path_separator = space', 'v1 v2', ['v1', 'v2']),
    ('path_separator = newline', '\n    v1\n    v2', ['v1', 'v2']),
    ('version_path_separator = :', 'v1:v2', ['v1', 'v2']),
    ('', 'v1, v2', ['v1', 'v2']),  # legacy split on spaces/commas
    ('', 'v1 v2', ['v1', 'v2']),
])
def test_version_locations_follow_alembic_config(tmp_path, monkeypatch, separator_line, value, names):
    root = os.fspath(tmp_path)
    ini = '[alembic]\nscript_location = alembic\n%s\nversion_locations = %s\n' % (separator_line, value)
    make_project(root, {}, ini=ini)
    monkeypatch.chdir(root)
    cfg = Config(os.path.join(root, 'alembic.ini'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the legacy split is deprecated
        theirs = [os.path.normpath(os.path.join(root, p)) for p in cfg.get_version_locations_list()]
    ours = AlembicConfig(root, 'alembic.ini').version_locations
    assert ours == theirs
    assert ours == [os.path.join(root, n) for n in names]


def test_relative_script_location_is_relative_to_the_service_path(tmp_path):
    root = make_project(tmp_path, {'a.py': template('a')}, ini='[alembic]\nscript_location = alembic\n')
    config = AlembicConfig(root, 'alembic.ini')
    assert config.script_location == os.path.join(root, 'alembic')
    assert config.version_locations == [os.path.join(root, 'alembic', 'versions')]


def test_pyproject_toml_fallback(tmp_path):
    root = os.fspath(tmp_path)
    make_project(root, {}, ini='[alembic]\n', versions='migrations/versions')
    os.makedirs(os.path.join(root, 'migrations', 'more'))
    with open(os.path.join(root, 'pyproject.toml'), 'w') as fh:
        fh.write('[tool.alembic]\nscript_location = "%(here)s/migrations"\n'
                 'version_locations = ["%(here)s/migrations/versions", "%(here)s/migrations/more"]\n'
                 'recursive_version_locations = true\n')
    config = AlembicConfig(root, 'alembic.ini')
    assert config.script_location == os.path.join(root, 'migrations')
    assert config.version_locations == [os.path.join(root, 'migrations/versions'),
                                        os.path.join(root, 'migrations/more')]
    assert config.recursive is True
    # `-c pyproject.toml`: the toml is the config
    os.unlink(os.path.join(root, 'alembic.ini'))
    config = AlembicConfig(root, 'pyproject.toml')
    assert config.script_location == os.path.join(root, 'migrations')


@pytest.mark.parametrize('ini,files,expect', [
    (None, 'missing', 'not found'),
    ('[alembic]\nsqlalchemy.url = x\n', {}, "no 'script_location'"),
    ('[alembic]\nscript_location = mypkg:migrations\n', {}, 'package resource'),
    ('[alembic]\nscript_location = nowhere\n', {}, 'does not exist'),
    ('[alembic]\nscript_location = alembic\nversion_locations = a b\npath_separator = comma\n', {},
     "'comma' is not a valid value for path_separator"),
    ('[alembic]\nscript_location = %(nothere)s/alembic\n', {}, 'cannot read script_location'),
    ('[alembic\nscript_location = alembic\n', {}, 'cannot read alembic config'),
])
def test_unusable_configs_say_which_file_and_what(tmp_path, ini, files, expect):
    root = os.fspath(tmp_path)
    if files == 'missing':
        os.makedirs(os.path.join(root, 'alembic'))
    else:
        make_project(root, files, ini=ini)
    with pytest.raises(AdapterError) as err:
        AlembicConfig(root, 'alembic.ini')
    assert expect in str(err.value)
    assert os.path.join(root, 'alembic.ini') in str(err.value)


# --------------------------------------------------------------------------------- the graph
def graph_of(tmp_path, files, ini=None):
    root = make_project(tmp_path, files, ini=ini)
    return root, RevisionGraph(AlembicConfig(root, 'alembic.ini'))


@pytest.mark.parametrize('files,expect,named', [
    ({'a.py': template('a'), 'b.py': template('b', 'zzz')}, "down_revision 'zzz' is not in any revision file",
     'b.py'),
    ({'a.py': template('a'), 'b.py': template('b', 'a', deps='nope')}, "depends_on 'nope'", 'b.py'),
    ({'a.py': template('a'), 'a2.py': template('a')}, "revision id 'a' is defined twice", 'a2.py'),
    ({'a.py': template('a', 'b'), 'b.py': template('b', 'a')}, 'Cycle is detected in revisions', 'a.py'),
    ({'a.py': template('a', 'a')}, 'Self-loop', 'a.py'),
    ({'a.py': template('a', labels='x'), 'b.py': template('b', 'a', labels='x')}, "Branch name 'x'", 'b.py'),
    ({'x_norev.py': "down_revision = None\n"}, "has no module-level `revision", 'x_norev.py'),
    ({'a.py': "revision = 'a'\n"}, 'has no module-level `down_revision', 'a.py'),
    ({'a.py': "revision = 'a-b'\ndown_revision = None\n"}, "not allowed in revision identifier", 'a.py'),
    ({'a.py': "revision = 5\ndown_revision = None\n"}, 'revision must be a non-empty string', 'a.py'),
    ({'a.py': "revision = 'a'\ndown_revision = {'x': 1}\n"}, 'down_revision must be None', 'a.py'),
    ({'a.py': "revision = 'a'\ndown_revision = get()\n"}, 'down_revision is set to get()', 'a.py'),
    ({'a.py': "revision = 'a\ndown_revision = None\n"}, 'not valid Python (line 1)', 'a.py'),
])
def test_bad_revision_files_are_named(tmp_path, files, expect, named):
    root, graph = graph_of(tmp_path, files)
    assert not graph.ok
    text = '\n'.join(graph.problems)
    assert expect in text
    assert os.path.join(root, 'alembic', 'versions', named) in text


def test_legacy_revision_id_from_the_file_name(tmp_path):
    _root, graph = graph_of(tmp_path, {'ae1027a6acf.py': "down_revision = None\n"})
    assert graph.ok and graph.heads() == ['ae1027a6acf']


def test_sourceless_revisions_are_reported(tmp_path):
    ini = '[alembic]\nscript_location = alembic\nsourceless = true\n'
    root, graph = graph_of(tmp_path, {'a.py': template('a'), 'b.pyc': b'\x00compiled'}, ini=ini)
    assert not graph.ok
    assert 'sourceless revision' in graph.problems[0] and 'b.pyc' in graph.problems[0]


def test_graph_answers_like_the_revision_map(tmp_path):
    files = {
        'a1.py': template('a1'), 'a2.py': template('a2', 'a1'), 'a3.py': template('a3', 'a2'),
        'b1.py': template('b1', 'a2'), 'm1.py': template('m1', ('a3', 'b1')),
        'c1.py': template('c1', labels='aux'), 'c2.py': template('c2', 'c1', deps='a2'),
    }
    _root, graph = graph_of(tmp_path, files)
    assert graph.ok
    assert graph.heads() == ['c2', 'm1']
    history = graph.history()
    assert sorted(history) == sorted(r[:-3] for r in files)
    for rev in history:  # parents first
        for parent in to_tuple(graph.map.get_revision(rev).down_revision, default=()):
            assert history.index(parent) < history.index(rev)
    assert graph.applied_set(['c2']) == {'c2', 'c1', 'a2', 'a1'}
    assert graph.upgrade_steps('heads', ['c2'])[-1] == 'm1'
    assert set(graph.upgrade_steps('heads', ['c2'])) == {'a3', 'b1', 'm1'}
    assert graph.downgrade_steps('a1', ['m1', 'c2']) == list(graph.downgrade_steps('a1', ['m1', 'c2']))
    assert set(graph.downgrade_steps('a1', ['m1', 'c2'])) == {'m1', 'a3', 'b1', 'c2', 'a2'}
    # the version table after upgrading c2 from nothing: c2's dependency on a2 merges the a2 row away,
    # while `alembic current` still shows a2 as a head of its own
    assert graph.rows_after([], graph.upgrade_steps('c2', []), True) == {'c2'}
    assert graph.all_current(['c2']) == {'a2', 'c2'}
    assert graph.rows_after(['m1', 'c2'], ['m1'], False) == {'a3', 'b1', 'c2'}


# ----------------------------------------------------------------------------------- settings
@pytest.mark.parametrize('value,expected', [(5, '5000ms'), (0.5, '500ms'), ('5s', '5s'), ('250 ms', '250ms'),
                                            ('0', '0'), (None, None), ('2min', '2min')])
def test_pg_settings(value, expected):
    assert pg_setting('lock_timeout', value) == expected


@pytest.mark.parametrize('value', ['5 seconds', '-1', '1s; DROP TABLE x', True, -3])
def test_pg_settings_refuse_garbage(value):
    with pytest.raises(PlanError):
        pg_setting('lock_timeout', value)


# ------------------------------------------------------------------------------ child process


def test_run_child_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / 'grandchild.pid'
    script = 'sleep 60 & echo $! > %s; wait' % pidfile
    start = time.monotonic()
    rc, out, err, timed_out = run_child(['sh', '-c', script], str(tmp_path), dict(os.environ), timeout=1.5)
    assert timed_out and rc == -signal.SIGKILL
    assert time.monotonic() - start < 10
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_run_child_gets_its_own_process_group_and_env(tmp_path):
    env = dict(os.environ, HOMELAB_SECRET_PROBE='s3cr3t')
    code = 'import os; print(os.getpgid(0) == os.getpid(), os.environ["HOMELAB_SECRET_PROBE"])'
    rc, out, err, timed_out = run_child([sys.executable, '-c', code], str(tmp_path), env)
    assert (rc, out.split(), timed_out) == (0, ['True', 's3cr3t'], False)


def test_child_dies_with_its_parent(tmp_path):
    """The parent (standing in for the module) is SIGKILLed: PR_SET_PDEATHSIG takes the child down."""
    pidfile = tmp_path / 'child.pid'
    collections = [p for p in sys.path if p.endswith(os.path.join('.build', 'collections'))][0]
    parent_code = textwrap.dedent('''
        import os, sys
        sys.path.insert(0, %r)
        from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child
        run_child([sys.executable, '-c', %r], %r, dict(os.environ))
    ''' % (collections, 'import os, time; open(%r, "w").write(str(os.getpid())); time.sleep(60)' % str(pidfile),
           str(tmp_path)))
    parent = subprocess.Popen([sys.executable, '-c', parent_code])
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, 'the child never started'
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), 'the child outlived its killed parent'


def test_plan_refuses_option_like_targets(tmp_path):
    root, graph = graph_of(tmp_path, {'a.py': template('a')})
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ServiceState
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    adapter = AlembicAdapter({'name': 'svc', 'tool': 'alembic', 'path': root, 'alembic_command': [ALEMBIC]},
                             DbUrl('postgresql://u@h/db'))
    state = ServiceState('alembic', current=[], heads=['a'], applied=[], pending=['a'], history=['a'],
                         detail=AlembicStateDetail(graph=graph, rows=[]))
    for target in ('--sql', '-x', '-1x'):
        with pytest.raises(PlanError) as err:
            adapter.plan(state, target)
        assert 'not valid' in str(err.value)
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'nosuchrev')
    assert "No such revision or branch 'nosuchrev'" in str(err.value)
    with pytest.raises(PlanError) as err:
        adapter.plan(state, '-1')
    assert 'nothing is applied' in str(err.value)
    plan = adapter.plan(state, 'head')
    assert (plan.direction, plan.steps, plan.to_revision) == ('up', ['a'], 'a')


# ------------------------------------------------------------------ source encoding (what Python imports)
ENCODING_CASES = [
    # (name, bytes, Python refuses to import it)
    ('utf-8', template('r1').replace('a revision', 'caf\u00e9').encode('utf-8'), False),
    ('latin-1 byte in the body', template('r1').replace('SELECT 1', 'SELECT \'caf\xe9\'').encode('latin-1'), True),
    ('latin-1 byte in the docstring', template('r1').replace('a revision', 'caf\xe9').encode('latin-1'), True),
    # CPython does not decode comments: such a file imports (and alembic runs it)
    ('latin-1 byte in a comment', b'# caf\xe9\n' + template('r1').encode('utf-8'), False),
    ('latin-1 with its coding line', b'# -*- coding: latin-1 -*-\n'
     + template('r1').replace('SELECT 1', 'SELECT \'caf\xe9\'').encode('latin-1'), False),
    ('utf-8 bytes under an ascii coding line', b'# coding: ascii\n' + template('r1').replace(
        'SELECT 1', 'SELECT \'caf\u00e9\'').encode('utf-8'), True),
    ('unknown coding', b'# -*- coding: klingon -*-\n' + template('r1').encode('utf-8'), True),
    ('BOM then a latin-1 byte', b'\xef\xbb\xbf' + template('r1').replace('SELECT 1', 'SELECT \'\xe9\'').encode(
        'latin-1'), True),
]


@pytest.mark.parametrize('name,data,refused', ENCODING_CASES, ids=[c[0] for c in ENCODING_CASES])
def test_source_encoding_is_checked_as_python_imports(tmp_path, name, data, refused):
    path = tmp_path / 'versions' / 'r1_rev.py'
    path.parent.mkdir()
    path.write_bytes(data)
    try:  # Python's own import of the file (what alembic does with it)
        compile(data, str(path), 'exec', dont_inherit=True)
        python_refuses = False
    except SyntaxError:
        python_refuses = True
    assert python_refuses == refused
    if not refused:
        check_source_encoding(data)
        assert revision_from_file(str(path)).revision == 'r1'
        return
    with pytest.raises(FileError) as err:
        revision_from_file(str(path))
    assert 'Python refuses to import it' in str(err.value) or 'not accept' in str(err.value)


def test_an_undecodable_applied_file_is_named_though_the_fast_path_reads_only_its_head(tmp_path):
    """Every file is decoded (alembic imports all of them for any command), not only the pending ones."""
    bad = template('b', 'a').replace('SELECT 1', "SELECT 'caf\xe9'").encode('latin-1')
    fast = fast_values(bad)
    assert fast is not None and fast['revision'] == 'b'  # the head alone looks fine
    root, graph = graph_of(tmp_path, {'a_first.py': template('a'), 'b_second.py': bad,
                                      'c_third.py': template('c', 'b')})
    assert not graph.ok
    path = os.path.join(root, 'alembic', 'versions', 'b_second.py')
    assert graph.problems == ['%s is not valid UTF-8 (byte 0xe9 on line 23), so Python refuses to import it and '
                              'every `alembic` command fails; save the file as UTF-8' % path]
    with pytest.raises(SyntaxError):  # alembic agrees: it cannot even list the revisions
        list(ScriptDirectory.from_config(Config(os.path.join(root, 'alembic.ini'))).walk_revisions())


def test_a_latin1_comment_is_not_an_error_because_alembic_loads_the_file(tmp_path):
    root, graph = graph_of(tmp_path, {'a_first.py': b'# caf\xe9\n' + template('a').encode('utf-8')})
    assert graph.ok and graph.heads() == ['a']
    revs = list(ScriptDirectory.from_config(Config(os.path.join(root, 'alembic.ini'))).walk_revisions())
    assert [r.revision for r in revs] == ['a']


# ------------------------------------------------------------------ upgrade()/downgrade() of the files to run
NO_UPGRADE = "revision = 'b'\ndown_revision = 'a'\n\ndef downgrade():\n    pass\n"


@pytest.mark.parametrize('source,function,missing', [
    (NO_UPGRADE, 'upgrade', True),
    (NO_UPGRADE, 'downgrade', False),
    ("revision = 'b'\ndown_revision = 'a'\n\ndef upgrade():\n    pass\n", 'downgrade', True),
    ("revision = 'b'\ndown_revision = 'a'\nfrom os import getcwd as upgrade, getcwd as downgrade\n", 'upgrade', False),
    ("revision = 'b'\ndown_revision = 'a'\nupgrade = downgrade = lambda: None\n", 'upgrade', False),
    ("revision = 'b'\ndown_revision = 'a'\nif True:\n    def upgrade():\n        pass\n", 'upgrade', False),
    ("revision = 'b'\ndown_revision = 'a'\nfrom os.path import *\n", 'upgrade', False),  # may bind anything
])
def test_files_to_run_must_define_the_function_alembic_calls(tmp_path, source, function, missing):
    root, graph = graph_of(tmp_path, {'a_first.py': template('a'), 'b_second.py': source})
    assert graph.ok
    problems = graph.syntax_problems(['b'], function)
    path = os.path.join(root, 'alembic', 'versions', 'b_second.py')
    if missing:
        assert problems == ['%s has no module-level %s(), so `alembic %s` would fail on revision b before running '
                            'anything; define `def %s():` in it (with `pass` as its body if there is nothing to do)'
                            % (path, function, function, function)]
    else:
        assert problems == []
    # alembic builds every step before running the first one: a step of a file without the function fails
    sd = ScriptDirectory.from_config(Config(os.path.join(root, 'alembic.ini')))
    script = sd.get_revision('b')
    build = MigrationStep.upgrade_from_script if function == 'upgrade' else MigrationStep.downgrade_from_script
    if missing:
        with pytest.raises(AttributeError):
            build(sd.revision_map, script)
    elif 'import *' not in source:
        build(sd.revision_map, script)


# ------------------------------------------------------------------ can the alembic command be run?
def _script(path, shebang):
    path.write_text('%s\nexit 0\n' % shebang)
    path.chmod(0o755)
    return str(path)


def test_command_problem_agrees_with_running_it(tmp_path):
    """command_problem(argv) is None exactly when run_child can start argv and it gets to run (exit 0)."""
    cwd = tmp_path / 'svc'
    (cwd / 'bin').mkdir(parents=True)
    ok = _script(cwd / 'bin' / 'ok', '#!/bin/sh')
    _script(cwd / 'bin' / 'gone-interpreter', '#!%s/old-venv/bin/python' % tmp_path)
    _script(cwd / 'bin' / 'env-missing', '#!/usr/bin/env homelab-no-such-python')
    _script(cwd / 'bin' / 'env-ok', '#!/usr/bin/env sh')
    noexec = cwd / 'bin' / 'noexec'
    noexec.write_text('#!/bin/sh\nexit 0\n')
    noexec.chmod(0o644)
    env = dict(os.environ, PATH='bin' + os.pathsep + '/usr/bin' + os.pathsep + '/bin')  # a relative entry: from cwd
    cases = {
        (ok,): None,
        ('bin/ok',): None,
        ('ok',): None,
        ('env-ok',): None,
        ('sh', '-c', 'exit 0'): None,
        ('/nonexistent/bin/alembic',): '/nonexistent/bin/alembic does not exist',
        ('bin/nothere',): '%s/bin/nothere does not exist' % cwd,
        ('homelab-no-such-alembic',): 'homelab-no-such-alembic is not on PATH (bin:/usr/bin:/bin)',
        (str(cwd / 'bin'),): '%s/bin is a directory' % cwd,
        (str(noexec),): '%s is not executable' % noexec,
        ('gone-interpreter',): '#! interpreter %s/old-venv/bin/python does not exist' % tmp_path,
        ('env-missing',): '`#!/usr/bin/env homelab-no-such-python`, and homelab-no-such-python is not on PATH',
    }
    for argv, expected in cases.items():
        why = command_problem(list(argv), str(cwd), env)
        try:
            rc = run_child(list(argv), str(cwd), env, timeout=30)[0]
        except OSError:
            rc = 'OSError'
        if expected is None:
            assert (why, rc) == (None, 0), argv
        else:
            assert why is not None and expected in why, (argv, why)
            assert rc != 0, argv
    # without PATH lookups (what status checks): only paths are judged
    assert command_problem(['homelab-no-such-alembic'], str(cwd), env, path_lookups=False) is None
    assert command_problem(['env-missing'], str(cwd), env, path_lookups=False) is None
    assert command_problem(['bin/env-missing'], str(cwd), env, path_lookups=False) is None
    assert 'does not exist' in command_problem(['bin/gone-interpreter'], str(cwd), env, path_lookups=False)


def _one_revision_state(tmp_path, command=None):
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import ServiceState
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    root, graph = graph_of(tmp_path, {'a.py': template('a')})
    spec = {'name': 'svc', 'tool': 'alembic', 'path': root}
    if command:
        spec['alembic_command'] = command
    adapter = AlembicAdapter(spec, DbUrl('postgresql://u@h/db'))
    return root, adapter, ServiceState('alembic', current=[], heads=['a'], applied=[], pending=['a'],
                                       history=['a'], detail=AlembicStateDetail(graph=graph, rows=[]))


def test_plan_refuses_a_command_that_cannot_run(tmp_path, monkeypatch):
    root, adapter, state = _one_revision_state(tmp_path, ['/nonexistent/bin/alembic', '-x', 'y'])
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert err.value.code == 'bad_config'
    assert str(err.value) == (
        "cannot upgrade service 'svc': alembic_command /nonexistent/bin/alembic -x y cannot be run: "
        "/nonexistent/bin/alembic does not exist; set alembic_command to the service's own alembic (e.g. "
        "['%s/.venv/bin/alembic']), or leave it out to use %s/.venv/bin/alembic (or, without it, alembic from PATH)"
        % (root, root))
    # nothing to run (already there): nothing needs alembic
    state.applied, state.current, state.detail.rows = ['a'], ['a'], ['a']
    assert adapter.plan(state, 'head').steps == []
    # the default: <path>/.venv/bin/alembic, else `alembic` from PATH
    root, adapter, state = _one_revision_state(tmp_path / 'default')
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    assert adapter.command() == ['alembic']
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert str(err.value) == (
        "cannot upgrade service 'svc': alembic_command is not set, %s/.venv/bin/alembic does not exist (or is not "
        "executable) and alembic is not on PATH (%s/empty); set alembic_command to the service's alembic, or "
        "create the service's virtualenv %s/.venv with alembic installed in it" % (root, tmp_path, root))
    monkeypatch.setenv('PATH', os.path.dirname(ALEMBIC))
    assert adapter.plan(state, 'head').steps == ['a']
    # a virtualenv whose python is gone (moved or rebuilt)
    os.makedirs(os.path.join(root, '.venv', 'bin'))
    _script(tmp_path / 'default' / '.venv' / 'bin' / 'alembic', '#!%s/moved/bin/python' % root)
    assert adapter.command() == [os.path.join(root, '.venv', 'bin', 'alembic')]
    with pytest.raises(PlanError) as err:
        adapter.plan(state, 'head')
    assert ('alembic_command is not set, so %s/.venv/bin/alembic would run, but %s/.venv/bin/alembic is a script '
            'whose #! interpreter %s/moved/bin/python does not exist' % (root, root, root)) in str(err.value)
    assert 'recreate the virtualenv %s/.venv' % root in str(err.value)


def test_child_env_takes_session_settings_from_the_options_and_leaves_os_environ_alone(monkeypatch):
    """client_connection_check_interval, lock_timeout and statement_timeout reach alembic's sessions in the
    child's own PGOPTIONS (after the caller's), never through this process's os.environ."""
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    monkeypatch.setenv('PGOPTIONS', '-c search_path=app')
    monkeypatch.setenv('ALEMBIC_CONFIG', 'other.ini')
    before = dict(os.environ)
    cli = AlembicCommand({'path': '/srv/svc'}, 'svc', DbUrl('postgresql://u@h/db'), lambda text: text)
    env = cli.env({'client_connection_check_interval': '1000', 'lock_timeout': 5, 'statement_timeout': '1min'})
    assert env['PGOPTIONS'] == ('-c search_path=app -c client_connection_check_interval=1000 -c lock_timeout=5000ms '
                                '-c statement_timeout=1min')
    assert 'ALEMBIC_CONFIG' not in env and env['DATABASE_URL'].startswith('postgresql')
    assert cli.env()['PGOPTIONS'] == '-c search_path=app'
    assert dict(os.environ) == before
