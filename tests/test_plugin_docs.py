"""Every plugin is documented: each filter has its DOCUMENTATION/EXAMPLES/RETURN (a YAML file next to the filter
plugin, plugins/filter/<name>.yml), and antsibull-docs lint-collection-docs --plugin-docs finds nothing to fix in
the modules, filters or the role's argument specs (the same gate as scripts/test.sh)."""

import glob
import importlib
import os
import subprocess

import pytest
import yaml

from harness.ansible import REPO, VENV_BIN

ANTSIBULL = os.path.join(VENV_BIN, 'antsibull-docs')


def _filters():
    names = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'plugins', 'filter', '*.py'))):
        mod = importlib.import_module('ansible_collections.homelab.migrations.plugins.filter.'
                                      + os.path.basename(path)[:-3])
        for name in mod.FilterModule().filters():
            names[name] = path
    return names


def test_every_filter_has_its_documentation_file():
    missing = []
    for name, path in _filters().items():
        doc = os.path.join(REPO, 'plugins', 'filter', name + '.yml')
        if not os.path.exists(doc):
            missing.append('%s (in %s)' % (name, os.path.basename(path)))
            continue
        with open(doc) as fh:
            data = yaml.safe_load(fh)
        assert data['DOCUMENTATION']['name'] == name and data['EXAMPLES'] and data['RETURN']['_value'], doc
    assert not missing, ('filters without plugins/filter/<name>.yml documentation: %s' % ', '.join(missing))
    # no file name is also a filter name of another file (ansible would look the filter up in that file)
    files = set(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'plugins', 'filter', '*.py')))
    assert not [n for n, p in _filters().items() if n in files and os.path.basename(p)[:-3] != n]


@pytest.mark.skipif(not os.path.exists(ANTSIBULL), reason='antsibull-docs is not installed (requirements.txt)')
def test_antsibull_docs_lint_collection_docs_is_clean():
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get('PATH', ''))
    proc = subprocess.run([ANTSIBULL, 'lint-collection-docs', '--plugin-docs', '.'], cwd=REPO, env=env, check=False,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
