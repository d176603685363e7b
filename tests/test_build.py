"""The collection tarball ships only what users need (galaxy.yml build_ignore), checked by the build gate
(scripts/check_build.py) the way scripts/test.sh runs it: on a copy of the repository's files with the
litter tools leave in a working tree (ansible-lint's .ansible/, .venv, caches, node_modules, old tarballs)."""

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from harness.ansible import REPO, VENV_BIN

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import check_build  # noqa: E402

LITTER = [
    '.ansible/collections/ansible_collections/homelab/migrations/plugins/modules/copy.py',
    '.ansible/roles/x/tasks/main.yml',
    '.venv/bin/python3.11',
    '.build/collections/x.txt',
    '.pytest_cache/v/cache/lastfailed',
    '.ruff_cache/0.1/x',
    'plugins/module_utils/__pycache__/spec.cpython-311.pyc',
    'plugins/filter/stale.pyc',
    'tests/output/junit/x.xml',
    'benchmarks/results/latest.json',
    'examples/homelab/services/stream-bot/node_modules/pg/index.js',
    'examples/homelab/services/dashboard/.venv/bin/alembic',
    'homelab-migrations-0.0.9.tar.gz',
]


def _copy(dest):
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split('\0')
    for rel in files:
        src = os.path.join(REPO, rel)
        if not rel or not os.path.isfile(src) or os.path.islink(src):
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
    for rel in LITTER:
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as fh:
            fh.write(os.urandom(200000) if rel.startswith('.ansible/collections') else b'x')


def _build(src, out):
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-galaxy'), 'collection', 'build', '--force',
                           '--output-path', out, src], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return os.path.join(out, [f for f in os.listdir(out) if f.endswith('.tar.gz')][0])


@pytest.fixture
def tree(tmp_path):
    src = str(tmp_path / 'src')
    _copy(src)
    return src


def test_tarball_holds_only_what_users_need(tree, tmp_path):
    tarball = _build(tree, str(tmp_path / 'dist'))
    assert check_build.problems(tarball) == []
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    top = set(n.split('/')[0] for n in names)
    assert {'plugins', 'roles', 'playbooks', 'meta', 'README.md', 'LICENSE'} <= top
    assert 'meta/execution-environment.yml' in names and 'bindep.txt' in names
    assert not [n for n in names if re.search(r'(^|/)(\.|tests/|__pycache__|node_modules)', n)]
    assert 'requirements.txt' not in names        # the pinned development toolchain
    assert os.path.getsize(tarball) < check_build.MAX_BYTES


def test_the_gate_fails_a_tarball_with_the_litter(tree, tmp_path):
    """Without build_ignore the same tree builds a tarball the gate refuses, naming what should not ship."""
    galaxy = os.path.join(tree, 'galaxy.yml')
    with open(galaxy) as fh:
        text = fh.read()
    with open(galaxy, 'w') as fh:
        fh.write(text[:text.index('build_ignore:')])
    tarball = _build(tree, str(tmp_path / 'dist'))
    found = check_build.problems(tarball)
    text = '\n'.join(found)
    assert 'more than the bound' in text
    for entry in ('.ansible/collections', 'tests/', 'benchmarks/', 'molecule/', 'scripts/', 'node_modules'):
        assert entry in text, (entry, text)
    out = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'check_build.py'), tarball],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 1 and 'build_ignore' in out.stderr
