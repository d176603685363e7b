"""The collection is ready for an execution environment: ansible-builder (the real one) creates a build context
for an EE that installs this collection, and the context's own introspection (the script that runs inside the
image build) collects the runtime Python requirements and the PostgreSQL client from the installed collection,
not the pinned development toolchain."""

import os
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement
from importlib.metadata import PackageNotFoundError, version

from harness.ansible import REPO, VENV_BIN

BUILDER = os.path.join(VENV_BIN, 'ansible-builder')

pytestmark = pytest.mark.skipif(not os.path.exists(BUILDER),
                                reason='ansible-builder is not installed (requirements.txt)')

EE = '''---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  ansible_core:
    package_pip: ansible-core
  ansible_runner:
    package_pip: ansible-runner
  galaxy: requirements.yml
'''


def _run(argv, cwd):
    proc = subprocess.run(argv, cwd=cwd, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, ' '.join(argv) + '\n' + proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope='module')
def context(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp('ee'))
    _run([os.path.join(VENV_BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', 'dist', REPO], tmp)
    tarball = os.path.join('dist', os.listdir(os.path.join(tmp, 'dist'))[0])
    _run([os.path.join(VENV_BIN, 'ansible-galaxy'), 'collection', 'install', '-p', 'collections', tarball], tmp)
    with open(os.path.join(tmp, 'execution-environment.yml'), 'w') as fh:
        fh.write(EE)
    with open(os.path.join(tmp, 'requirements.yml'), 'w') as fh:
        yaml.safe_dump({'collections': [{'name': tarball, 'type': 'file'}]}, fh)
    _run([BUILDER, 'create', '-f', 'execution-environment.yml', '-c', 'context'], tmp)
    return tmp


def test_builder_creates_a_context_that_installs_the_collection(context):
    ctx = os.path.join(context, 'context')
    containerfile = [f for f in ('Containerfile', 'Dockerfile') if os.path.exists(os.path.join(ctx, f))]
    assert containerfile, os.listdir(ctx)
    with open(os.path.join(ctx, containerfile[0])) as fh:
        text = fh.read()
    assert 'ansible-galaxy' in text and 'introspect' in text and 'install-from-bindep' in text
    with open(os.path.join(ctx, '_build', 'requirements.yml')) as fh:
        assert 'homelab-migrations' in fh.read()


def test_introspection_collects_runtime_requirements_and_the_postgresql_client(context):
    script = os.path.join(context, 'context', '_build', 'scripts', 'introspect.py')
    out = yaml.safe_load(_run([os.path.join(VENV_BIN, 'python'), script, 'introspect', 'collections'], context))
    python = [line.split('#')[0].strip() for line in out['python'] if 'homelab.migrations' in line]
    system = [line.split('#')[0].strip() for line in out['system'] if 'homelab.migrations' in line]
    names = [Requirement(r).name.lower() for r in python]
    assert 'alembic' in names and 'sqlalchemy' in names
    assert 'psycopg2-binary' in names or 'psycopg2' in names
    # none of the development toolchain, and no exact pins (EE base images carry other Pythons)
    assert not set(names) & {'ruff', 'pytest', 'molecule', 'ansible-lint', 'antsibull-changelog', 'ansible-core'}
    assert not [r for r in python if '==' in r], python
    # the ranges admit the versions the tests run here
    for req in map(Requirement, python):
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = version(req.name)
        except PackageNotFoundError:
            have = version('psycopg2') if req.name == 'psycopg2-binary' else None
        assert have and req.specifier.contains(have, prereleases=True), (str(req), have)
    assert 'postgresql-client [platform:dpkg]' in system
    assert [s for s in system if re.match(r'postgresql\S* \[platform:rpm\]', s)], system
