"""adapters/alembic/graph.py: bad revision files named, legacy revision ids, sourceless revisions, answers like
alembic's RevisionMap, and the upgrade()/downgrade() the files to run must define. No database; temp files only."""

import os

import pytest

from harness.alembic_files import graph_of, template

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import to_tuple

from alembic.config import Config
from alembic.runtime.migration import MigrationStep
from alembic.script import ScriptDirectory


# --------------------------------------------------------------------------------- the graph


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


# ------------------------------------------------------------------ one parse for the syntax check and pre-flight

UPGRADE_SQL = ("revision = 'b'\ndown_revision = 'a'\nfrom alembic import op\n\n\ndef upgrade():\n"
               "    op.execute(\"CREATE TYPE mood AS ENUM ('ok')\")  # %s\n"
               "    with op.get_context().autocommit_block():\n"
               "        op.create_index('i', 't', ['c'], postgresql_concurrently=True)\n\n\n"
               "def downgrade():\n    op.execute('DROP TYPE mood')\n")


@pytest.mark.parametrize('data,kept', [
    ((UPGRADE_SQL % 'plain').encode('utf-8'), True),
    ((UPGRADE_SQL % 'caf\u00e9').encode('utf-8'), True),
    (b'\xef\xbb\xbf' + (UPGRADE_SQL % 'bom').encode('utf-8'), False),  # read whole with the graph already
    (b'# -*- coding: latin-1 -*-\n' + (UPGRADE_SQL % 'caf\u00e9').encode('latin-1'), False),
])
def test_the_preflight_reads_the_calls_from_the_syntax_checks_parse(tmp_path, data, kept):
    from ansible_collections.homelab.migrations.plugins.module_utils.preflight.alembic_calls import (
        alembic_upgrade_calls)
    root, graph = graph_of(tmp_path, {'a_first.py': template('a'), 'b_second.py': data})
    path = os.path.join(root, 'alembic', 'versions', 'b_second.py')
    assert graph.ok
    assert graph.syntax_problems(['b'], 'upgrade') == []
    assert ((path, 'upgrade') in graph.calls) is kept
    fresh = alembic_upgrade_calls(data, 'upgrade')
    assert len(fresh) == 2
    assert graph.function_calls(path, 'upgrade') == fresh
    assert (path, 'upgrade') not in graph.calls  # handed over once: a second call reads the file again
    assert graph.function_calls(path, 'upgrade') == fresh
    assert graph.function_calls(path, 'downgrade') == alembic_upgrade_calls(data, 'downgrade')


@pytest.mark.parametrize('data,same', [
    (b"x = 'caf\xc3\xa9'\n", True),
    (b"\xef\xbb\xbfx = 'caf\xc3\xa9'\n", True),
    (b"# coding: utf-8\nx = 1\n", True),
    (b"# -*- coding: latin-1 -*-\nx = 'caf\xe9'\n", False),
    (b"x = 1  # caf\xe9\n", False),  # Python imports it (comments are not decoded); the pre-flight reads it apart
])
def test_parses_as_text_only_when_the_bytes_tree_is_the_texts(data, same):
    import ast
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import parses_as_text
    assert parses_as_text(data) is same
    if same:
        assert ast.dump(ast.parse(data)) == ast.dump(ast.parse(data.decode('utf-8-sig')))
