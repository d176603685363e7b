"""Revision names written as expressions, read without running anything, against real alembic.

Each case writes the same small tree (base a0; an ``expand`` branch e1 -> e2 whose label is written in one of
the ways projects write it; a ``contract`` branch c1 depending on e1) plus an application module
``app/cli.py``; real alembic's ScriptDirectory (tests/harness/alembic_oracle.py, with ``prepend_sys_path =
.`` as ``alembic init`` writes it, so the application is importable) is the oracle for heads, history and
what ``alembic upgrade expand@head`` runs. A value read statically gives the same answers; a value that
only running code tells is a warning, and only a target naming that label is refused, with file and line.
"""

import json
import os
import subprocess
import sys

import pytest
from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph

ORACLE = os.path.join(REPO, 'tests', 'harness', 'alembic_oracle.py')

INI = '[alembic]\nscript_location = alembic\nprepend_sys_path = .\n'
CLI = "EXPAND_BRANCH = 'expand'\nBRANCHES = ('expand',)\nFIRST = 'e1'\nCOMPUTED = 'ex' + 'pand'\n"

REV = '''"""{doc}

Revision ID: {rev}
Revises: {revises}
"""
{imports}
from alembic import op

revision = {rev!r}
down_revision = {down}
branch_labels = {labels}
depends_on = {deps}


def upgrade():
    op.execute("SELECT 1")


def downgrade():
    pass
'''

# (case id, import lines of e1, its branch_labels expression, read statically?)
LABEL_FORMS = [
    ('module attribute', 'from app import cli', '(cli.EXPAND_BRANCH,)', True),
    ('imported name', 'from app.cli import EXPAND_BRANCH', '(EXPAND_BRANCH,)', True),
    ('bare name, no tuple', 'from app.cli import EXPAND_BRANCH as LABEL', 'LABEL', True),
    ('dotted import', 'import app.cli', '(app.cli.EXPAND_BRANCH,)', True),
    ('aliased module', 'import app.cli as c', 'c.BRANCHES', True),
    ('star import', 'from app.cli import *', '[EXPAND_BRANCH]', True),
    ('same-file constant', "LOCAL = 'expand'", '(LOCAL,)', True),
    ('computed constant', 'from app import cli', '(cli.COMPUTED,)', False),
    ('call', 'from app import cli', "(str(cli.EXPAND_BRANCH),)", False),
    ('f-string', "NAME = 'pand'", "(f'ex{NAME}',)", False),
]


def write_tree(root, imports, labels, deps_c1="'e1'", down_e2="'e1'"):
    os.makedirs(os.path.join(root, 'alembic', 'versions'))
    os.makedirs(os.path.join(root, 'app'))
    with open(os.path.join(root, 'alembic.ini'), 'w') as fh:
        fh.write(INI)
    with open(os.path.join(root, 'app', '__init__.py'), 'w') as fh:
        fh.write('')
    with open(os.path.join(root, 'app', 'cli.py'), 'w') as fh:
        fh.write(CLI)
    files = {
        'a0': dict(revises='', imports='', down='None', labels='None', deps='None'),
        'e1': dict(revises='a0', imports=imports, down="'a0'", labels=labels, deps='None'),
        'e2': dict(revises='e1', imports='from app import cli', down=down_e2, labels='None', deps='None'),
        'c1': dict(revises='a0', imports='from app import cli', down="'a0'", labels="('contract',)", deps=deps_c1),
    }
    for rev, values in files.items():
        with open(os.path.join(root, 'alembic', 'versions', rev + '.py'), 'w') as fh:
            fh.write(REV.format(doc=rev, rev=rev, **values))
    return RevisionGraph(AlembicConfig(root, 'alembic.ini'))


def oracle(root, targets):
    proc = subprocess.run([sys.executable, ORACLE, root, '[]', json.dumps(targets)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def line_of(path, start):
    with open(path) as fh:
        return [i for i, ln in enumerate(fh.read().splitlines(), 1) if ln.startswith(start)][0]


@pytest.mark.parametrize('name,imports,labels,static', LABEL_FORMS, ids=[f[0] for f in LABEL_FORMS])
def test_label_forms_agree_with_alembic(tmp_path, name, imports, labels, static):
    root = str(tmp_path / 'svc')
    graph = write_tree(root, imports, labels)
    assert graph.ok, graph.problems
    real = oracle(root, ['expand@head', 'contract@head', 'heads', 'e2'])
    assert graph.heads() == real['heads'] and graph.history() == real['history']
    assert graph.upgrade_steps('heads', []) == real['targets']['heads']
    assert graph.upgrade_steps('e2', []) == real['targets']['e2']
    assert graph.upgrade_steps('contract@head', []) == real['targets']['contract@head']
    e1 = os.path.join(root, 'alembic', 'versions', 'e1.py')
    if static:
        assert graph.unread == []
        assert graph.upgrade_steps('expand@head', []) == real['targets']['expand@head'] == ['a0', 'e1', 'e2']
        assert graph.unreadable_target('expand@head') is None
    else:
        assert [(u['name'], u['line']) for u in graph.unread] == [('branch_labels', line_of(e1, 'branch_labels'))]
        (warning,) = graph.warnings()
        assert '%s line %d' % (e1, line_of(e1, 'branch_labels')) in warning and 'revision e1' in warning
        for target in ('expand@head', 'expand', 'expand@-1'):
            refusal = graph.unreadable_target(target)
            assert refusal and '%s line %d' % (e1, line_of(e1, 'branch_labels')) in refusal
        for target in ('heads', 'contract@head', 'e2', 'head', 'c1', '-1'):
            assert graph.unreadable_target(target) is None


def test_depends_on_and_down_revision_from_constants(tmp_path):
    root = str(tmp_path / 'svc')
    graph = write_tree(root, 'from app import cli', '(cli.EXPAND_BRANCH,)', deps_c1='cli.FIRST',
                       down_e2='cli.FIRST')
    assert graph.ok and graph.unread == []
    real = oracle(root, ['heads', 'c1'])
    assert graph.upgrade_steps('c1', []) == real['targets']['c1'] == ['a0', 'e1', 'c1']
    assert graph.upgrade_steps('heads', []) == real['targets']['heads']


def test_unreadable_down_revision_falls_back_to_the_docstring(tmp_path):
    root = str(tmp_path / 'svc')
    graph = write_tree(root, 'from app import cli', "('expand',)", down_e2="cli.FIRST.strip()")
    assert graph.ok
    real = oracle(root, ['heads'])
    assert graph.heads() == real['heads'] and graph.upgrade_steps('heads', []) == real['targets']['heads']
    (item,) = graph.unread
    assert item['name'] == 'down_revision' and item['revision'] == 'e2' and 'Revises: e1' in item['assumed']


def test_unreadable_down_revision_without_docstring_is_a_broken_file(tmp_path):
    root = str(tmp_path / 'svc')
    write_tree(root, 'from app import cli', "('expand',)", down_e2='cli.FIRST.strip()')
    path = os.path.join(root, 'alembic', 'versions', 'e2.py')
    with open(path) as fh:
        text = fh.read()
    with open(path, 'w') as fh:
        fh.write(text.replace('Revises: e1\n', ''))
    graph = RevisionGraph(AlembicConfig(root, 'alembic.ini'))
    assert not graph.ok
    assert any(path in p and 'down_revision is set to cli.FIRST.strip()' in p for p in graph.problems)


def test_depends_on_an_unreadable_label_is_dropped_with_a_warning(tmp_path):
    root = str(tmp_path / 'svc')
    graph = write_tree(root, 'from app import cli', '(cli.COMPUTED,)', deps_c1="'expand'")
    assert graph.ok
    names = sorted(u['name'] for u in graph.unread)
    assert names == ['branch_labels', 'depends_on']
    real = oracle(root, ['heads'])
    assert graph.heads() == real['heads']
