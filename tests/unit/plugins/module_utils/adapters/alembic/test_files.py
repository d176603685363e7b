"""adapters/alembic/files.py: the fast path vs the full AST, the file listing compared with alembic's ScriptDirectory,
and source encodings checked as Python imports them.

No database here; the checks compare with the real alembic library (its Config, ScriptDirectory
and module loading) run in-process on files in a temp directory.
"""

import os

import pytest

from harness.alembic_files import graph_of, make_project, template

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import (
    check_source_encoding, fast_values, list_revision_files, revision_from_file)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import (
    FileError, Unread, full_values)

from alembic.config import Config
from alembic.script import Script, ScriptDirectory


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
