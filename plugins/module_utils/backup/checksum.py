# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a backup is and whether it is whole: sha256 digests, ``.sha256`` files, format and completeness checks.

A ``.sha256`` file is in ``sha256sum`` format (``<64 hex>  <name>``). For a directory-format backup the
digest is the sha256 of a manifest: one ``<sha256 of file>  <path relative to the directory>`` line per
file, sorted by path. A plain-format dump is complete when it ends with pg_dump's completion marker.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import stat

from ansible_collections.homelab.migrations.plugins.module_utils import safe_path
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError

CHUNK = 1024 * 1024  # bytes read at a time
PLAIN_COMPLETE_MARKER = b'-- PostgreSQL database dump complete'


def file_sha256(path):
    """sha256 (64 hex digits) of the file at ``path``, read in CHUNK-sized blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def directory_manifest(path):
    """'<sha256>  <relative path>' lines, sorted, for every file of a directory-format dump."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full) or not os.path.isfile(full):
                raise BackupError('%s is not a regular file; a pg_dump directory holds only regular files' % full)
            entries.append(os.path.relpath(full, path))
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                raise BackupError('%s is a symlink; a pg_dump directory holds only regular files'
                                  % os.path.join(root, name))
    lines = ['%s  %s\n' % (file_sha256(os.path.join(path, rel)), rel) for rel in sorted(entries)]
    return ''.join(lines)


def backup_digest(path, fmt):
    """(sha256, size_bytes) of a backup file, or of the manifest of a directory-format backup."""
    if fmt == 'directory':
        manifest = directory_manifest(path)
        size = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                size += os.path.getsize(os.path.join(root, name))
        return hashlib.sha256(manifest.encode('utf-8')).hexdigest(), size
    return file_sha256(path), os.path.getsize(path)


def sidecar_text(digest, name):
    """The line of a ``.sha256`` file (sha256sum format) for the backup ``name``."""
    return '%s  %s\n' % (digest, name)


_SIDECAR_RE = re.compile(r'^([0-9a-fA-F]{64}) [ *](.+)$')


def read_sidecar(path):
    """(digest, name) from a sha256sum-format file, or None when it is not one."""
    try:
        fd = safe_path.open_nofollow(path, os.O_RDONLY | os.O_NONBLOCK, what='checksum file')  # a FIFO: no wait
        try:
            data = os.read(fd, 4096) if stat.S_ISREG(os.fstat(fd).st_mode) else b''
        finally:
            os.close(fd)
    except OSError:
        return None
    lines = data.decode('utf-8', 'replace').splitlines()
    if not lines:
        return None
    match = _SIDECAR_RE.match(lines[0].rstrip('\r'))
    if not match:
        return None
    return match.group(1).lower(), match.group(2)


def detect_format(path):
    """custom / directory / plain from the backup itself."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'toc.dat')):
            raise BackupError('%s is a directory but not a pg_dump directory-format backup (no toc.dat)' % path)
        return 'directory'
    with open(path, 'rb') as fh:
        head = fh.read(5)
    if head == b'PGDMP':
        return 'custom'
    if head[:2] == b'\x1f\x8b':
        raise BackupError('%s is gzip-compressed; decompress it (gunzip) and restore the .sql file' % path)
    return 'plain'


def plain_dump_complete(path):
    """True when a plain-format dump ends with pg_dump's completion marker."""
    size = os.path.getsize(path)
    with open(path, 'rb') as fh:
        fh.seek(max(0, size - 8192))
        tail = fh.read()
    return PLAIN_COMPLETE_MARKER in tail
