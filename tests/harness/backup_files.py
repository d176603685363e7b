"""Files in a backup directory, made by hand for the backup tests: backups with their .sha256 sidecars at a given
age (``make_backup_file``; ``DAY`` seconds), a stand-in pg_dump/pg_restore/psql printing a version (``fake_tool``),
and the uid of the user ``nobody`` (skips when the host has none)."""

import os
import pwd

import pytest


def make_backup_file(dest, name, mtime, sidecar=True, kind='file'):
    path = os.path.join(dest, name)
    if kind == 'dir':
        os.makedirs(path)
        with open(os.path.join(path, 'toc.dat'), 'w') as fh:
            fh.write('toc')
    else:
        with open(path, 'w') as fh:
            fh.write('data ' + name)
    if sidecar:
        with open(path + '.sha256', 'w') as fh:
            fh.write('%s  %s\n' % ('0' * 64, name))
        os.utime(path + '.sha256', (mtime, mtime))
    os.utime(path, (mtime, mtime))
    return path


DAY = 86400.0


def fake_tool(directory, name, version):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, 'w') as fh:
        fh.write('#!/bin/sh\necho "%s (PostgreSQL) %s"\n' % (name, version))
    os.chmod(path, 0o755)
    return path


def nobody():
    try:
        return pwd.getpwnam('nobody').pw_uid
    except KeyError:  # pragma: no cover
        pytest.skip('no user nobody on this host')
