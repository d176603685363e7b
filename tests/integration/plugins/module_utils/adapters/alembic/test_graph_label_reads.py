"""Branch labels read from the application's constants the way Python binds them (red team 14).

Status reads ``branch_labels = (cli.EXPAND,)`` without running anything; each tree below is a way a
name can be bound that a plain "last ``NAME = literal`` in the file" reading gets wrong. Each is
compared with what the real ``alembic heads`` prints: the label alembic sees, or, where Python fails to
import the revision file (every alembic command fails), no label claimed, only a warning.
"""

import os
import re
import shutil
import subprocess

import pytest

from harness.alembic_gen import ALEMBIC, AlembicProject

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph


@pytest.fixture(scope='module')
def forked(tmp_path_factory):
    """a0 -> e1 (label expand), a0 -> c1 (label contract): two heads."""
    proj = AlembicProject.init(str(tmp_path_factory.mktemp('labels') / 'svc'))
    proj.revision('base', 'a0')
    proj.revision('expand 1', 'e1', head='a0', splice=True, branch_label='expand')
    proj.revision('contract 1', 'c1', head='a0', splice=True, branch_label='contract')
    return proj


def _variant(forked, dest, files, expr, imports, append=''):
    shutil.copytree(forked.root, dest)
    proj = AlembicProject(dest)
    for rel, text in files.items():
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as fh:
            fh.write(text)
    path = proj.file_of('e1')
    with open(path) as fh:
        text = fh.read()
    text = text.replace('import sqlalchemy as sa\n', 'import sqlalchemy as sa\n\n%s\n' % imports, 1)
    text, count = re.subn(r"^branch_labels: (.*) = \('expand',\)$", r'branch_labels: \1 = %s' % expr, text, flags=re.M)
    assert count == 1
    with open(path, 'w') as fh:
        fh.write(text + append)
    return proj


def _alembic_labels(proj):
    """{revision: [labels]} of the heads as `alembic heads` prints them, or None when alembic fails."""
    proc = subprocess.run([ALEMBIC, 'heads'], cwd=proj.root, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return None
    out = {}
    for line in proc.stdout.splitlines():
        match = re.match(r'^(\w+) ((?:\([^)]*\) )*)\(head\)', line.strip())
        if match:
            out[match.group(1)] = sorted(re.findall(r'\(([^)]*)\)', match.group(2)))
    return out


def _our_labels(proj):
    graph = RevisionGraph(AlembicConfig(proj.root, 'alembic.ini'))
    assert graph.ok, graph.problems
    return dict((r.revision, sorted(r.branch_labels)) for r in graph.revisions if r.revision in graph.heads()), graph


CASES = {
    # a constant rebound by tuple unpacking after an older literal: Python sees the newer value
    'tuple_unpacking_rebinds': ({'app/__init__.py': '', 'app/cli.py': "EXPAND = 'old'\nEXPAND, CONTRACT = "
                                 "'expand', 'contract'\n"}, '(cli.EXPAND,)', 'from app import cli'),
    # a package directory beside a module file of the same name: Python imports the package
    'package_beats_module_file': ({'app/__init__.py': '', 'app/cli.py': "EXPAND = 'stale'\n",
                                   'app/cli/__init__.py': "EXPAND = 'expand'\n"},
                                  '(cli.EXPAND,)', 'from app import cli'),
    # the package __init__ imports its submodule: still that submodule
    'init_imports_submodule': ({'app/__init__.py': 'from . import cli\n', 'app/cli.py': "EXPAND = 'expand'\n"},
                               '(app.cli.EXPAND,)', 'import app'),
    'relative_star_in_app': ({'app/__init__.py': '', 'app/consts.py': "EXPAND = 'expand'\n",
                              'app/cli.py': 'from .consts import *\n'}, '(cli.EXPAND,)', 'from app import cli'),
}

# Python cannot import the revision file: alembic fails; status must not claim the label
CRASHES = {
    'init_attribute_shadows_submodule': ({'app/__init__.py': 'cli = None\n', 'app/cli.py': "EXPAND = 'expand'\n"},
                                         '(cli.EXPAND,)', 'from app import cli', ''),
    'star_import_respects_all': ({'app/__init__.py': '', 'app/cli.py': "__all__ = ['OTHER']\nEXPAND = 'expand'\n"
                                  "OTHER = 1\n"}, '(EXPAND,)', 'from app.cli import *', ''),
    'star_import_skips_private_names': ({'app/__init__.py': '', 'app/cli.py': "_EXPAND = 'expand'\n"},
                                        '(_EXPAND,)', 'from app.cli import *', ''),
    'name_bound_below_its_use': ({}, '(EXPAND,)', '', "\nEXPAND = 'expand'\n"),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_labels_from_constants_as_python_binds_them(forked, tmp_path, case):
    files, expr, imports = CASES[case]
    proj = _variant(forked, str(tmp_path / 'svc'), files, expr, imports)
    theirs = _alembic_labels(proj)
    assert theirs == {'e1': ['expand'], 'c1': ['contract']}
    ours, graph = _our_labels(proj)
    assert ours == theirs
    assert graph.warnings() == []


@pytest.mark.parametrize('case', sorted(CRASHES))
def test_a_label_python_cannot_bind_is_never_claimed(forked, tmp_path, case):
    files, expr, imports, append = CRASHES[case]
    proj = _variant(forked, str(tmp_path / 'svc'), files, expr, imports, append)
    assert _alembic_labels(proj) is None  # alembic cannot import e1's file
    ours, graph = _our_labels(proj)
    assert ours['e1'] == []
    assert [w for w in graph.warnings() if 'e1' in w and 'branch_labels' in w]
