"""Status reads only regular files, and only so much of them (issue 12).

A FIFO where a journal, a migration or a revision file should be made `--check` wait forever for a
writer; a journal symlinked to /dev/zero was read until memory ran out. Every file status reads from a
service's tree is opened without blocking, must be a regular file (checked on the opened descriptor) and
is read up to a cap. The real status module runs on a copy of the example services with one file
replaced; it must end quickly, name the file and what it is, and leave the other services' status intact.
"""

import os
import shutil
import time

import pytest

from harness.ansible import run_module

from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    JOURNAL_LIMIT,
    FileTooLarge,
    NotRegularFile,
    read_regular,
)
from integration.plugins.modules.test_homelab_migration_status import SERVICES, homelab, urls_of  # pylint: disable=wrong-import-order

BOUND = 60


@pytest.fixture
def three(make_db):
    return {'dashboard': make_db(), 'stream-bot': make_db(), 'discord-bot': make_db()}


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)


def _symlink(target):
    def make(path):
        os.unlink(path)
        os.symlink(target, path)
    return make


def _sparse(size):
    def make(path):
        with open(path, 'r+b') as fh:
            fh.truncate(size)
    return make


def _first(folder, suffix):
    return sorted(f for f in os.listdir(folder) if f.endswith(suffix))[2]


CASES = {
    # (service, file relative to the service, how it is replaced, words the problem must contain)
    'journal-fifo': ('stream-bot', 'migrations/meta/_journal.json', _fifo, 'FIFO'),
    'journal-dev-zero': ('stream-bot', 'migrations/meta/_journal.json', _symlink('/dev/zero'),
                         'character device'),
    'journal-huge': ('stream-bot', 'migrations/meta/_journal.json', _sparse(JOURNAL_LIMIT + 1), 'bytes'),
    'sql-fifo': ('stream-bot', 'migrations/0003_add_platform_user_unique_constraint.sql', _fifo, 'FIFO'),
    'revision-fifo': ('dashboard', 'alembic/versions/003_create_user_preferences.py', _fifo, 'FIFO'),
    'revision-dev-urandom': ('dashboard', 'alembic/versions/004_add_index.py', _symlink('/dev/urandom'),
                             'character device'),
    'alembic-ini-fifo': ('dashboard', 'alembic.ini', _fifo, 'FIFO'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_status_refuses_special_files_fast(three, tmp_path, case):
    service, rel, replace, words = CASES[case]
    root = str(tmp_path / 'services')
    shutil.copytree(SERVICES, root, ignore=shutil.ignore_patterns('node_modules', '__pycache__', '.venv'))
    replace(os.path.join(root, service, rel))
    started = time.monotonic()
    result, proc = run_module('homelab_migration_status', {'services': homelab(urls_of(three), root)},
                              check=True, timeout=BOUND)
    took = time.monotonic() - started
    assert took < BOUND, took
    assert not result.get('failed'), result.get('msg') or proc.stdout[-3000:]
    entry = result['services'][service]
    assert entry['status'] == 'error', entry
    messages = ' | '.join(p['message'] for p in entry['problems'])
    assert words in messages and os.path.basename(rel) in messages, messages
    others = [name for name in result['services'] if name != service]
    for name in others:
        assert result['services'][name]['status'] != 'error' or name == 'discord-bot' and service == 'stream-bot', \
            (name, result['services'][name])


def test_read_regular(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_bytes(b'x' * 100)
    assert read_regular(str(plain), 100) == b'x' * 100
    with pytest.raises(FileTooLarge) as info:
        read_regular(str(plain), 99)
    assert 'more than the 99 bytes' in info.value.strerror
    assert read_regular(str(plain), 10, head=True) == b'x' * 10
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile) as info:
        read_regular(fifo)
    assert 'FIFO' in info.value.strerror
    link = str(tmp_path / 'zero')
    os.symlink('/dev/zero', link)
    with pytest.raises(NotRegularFile) as info:
        read_regular(link)
    assert 'character device' in info.value.strerror and '/dev/zero' in info.value.strerror
    with pytest.raises(NotRegularFile):
        read_regular(str(tmp_path))
    target = tmp_path / 'target'
    target.write_bytes(b'ok')
    os.symlink(str(target), str(tmp_path / 'link'))
    assert read_regular(str(tmp_path / 'link')) == b'ok'
