# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup held open for a restore (:class:`HeldBackup`): the bytes checked are the bytes restored."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import stat
import tempfile

from ansible_collections.homelab.migrations.plugins.module_utils import regular_file
from ansible_collections.homelab.migrations.plugins.module_utils import safe_path
from ansible_collections.homelab.migrations.plugins.module_utils.backup.checksum import (
    CHUNK, backup_digest, detect_format, read_sidecar)
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError
from ansible_collections.homelab.migrations.plugins.module_utils.backup.store import FORMAT_OF_EXTENSION, check_dest


def verify_backup(path):
    """(format, sha256, size) of a backup whose .sha256 file matches it; BackupError otherwise (HeldBackup)."""
    with HeldBackup(os.path.abspath(path).rstrip('/') or '/') as held:
        return held.fmt, held.digest, held.size


class HeldBackup:
    """A backup opened once for a restore: the bytes checked are the bytes restored.

    A file (custom or plain format) is opened with O_NOFOLLOW and stays open; its checks (PGDMP header,
    sha256 against the .sha256 file) read that open file, and the tools get it as ``/dev/fd/N``, so a file
    swapped in under the same name after the check is never read. A directory-format backup is copied into a
    private 0700 directory beside it, checked there, and restored from that copy.
    """

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.copy = None
        self.source = path
        self.fmt = self.digest = self.size = None

    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Close the held file and remove the private copy of a directory backup (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.copy:
            shutil.rmtree(self.copy, ignore_errors=True)
            self.copy = None

    def _refuse(self, why, **result):
        raise BackupError('refusing to restore %s: %s' % (self.path, why), **result)

    def _open(self):
        path = self.path
        check_dest(os.path.dirname(path), 'the directory of the backup')
        if not os.path.lexists(path):
            raise BackupError('backup %s does not exist; give path the full path of a backup made by this module'
                              % path)
        ext = path.rsplit('.', 1)[-1] if '.' in os.path.basename(path) else ''
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self._refuse('it is a symlink; give the real file (%s)' % os.path.realpath(path))
        if stat.S_ISDIR(st.st_mode):
            self.fmt = detect_format(path)
            self._copy_directory()
        else:
            self._open_file(ext)
        expected = self._sidecar()
        if self.digest != expected[0]:
            self._refuse('its sha256 is %s but %s.sha256 says %s, so the file was truncated or modified after the '
                         'backup; restore another backup' % (self.digest, path, expected[0]),
                         path=path, format=self.fmt, sha256=self.digest, size_bytes=self.size)

    def _open_file(self, ext):
        try:
            # O_NONBLOCK: open() of a FIFO swapped in for the backup would wait for a writer forever
            self.fd = safe_path.open_nofollow(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOCTTY', 0),
                                              what='backup')
        except OSError as exc:
            raise BackupError('refusing to restore %s: %s' % (self.path, exc.strerror or exc))
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode):
            self._refuse('it is %s, not a regular file' % regular_file.kind_of(st.st_mode))
        os.set_blocking(self.fd, True)
        head = os.pread(self.fd, 5, 0)
        if head[:2] == b'\x1f\x8b':
            raise BackupError('%s is gzip-compressed; decompress it (gunzip) and restore the .sql file' % self.path)
        self.fmt = 'custom' if head == b'PGDMP' else 'plain'
        if ext in FORMAT_OF_EXTENSION and FORMAT_OF_EXTENSION[ext] != self.fmt:
            self._refuse('a .%s backup must be a pg_dump %s-format archive%s, and this one is not, so it was '
                         'replaced or is not a backup made by this module'
                         % (ext, FORMAT_OF_EXTENSION[ext], ' (it starts with PGDMP)' if ext == 'dump' else ''))
        digest = hashlib.sha256()
        offset = 0
        while True:
            block = os.pread(self.fd, CHUNK, offset)
            if not block:
                break
            digest.update(block)
            offset += len(block)
        self.digest, self.size = digest.hexdigest(), offset
        self.source = '/dev/fd/%d' % self.fd

    def _copy_directory(self):
        self.copy = tempfile.mkdtemp(prefix='.%s.restore-' % os.path.basename(self.path),
                                     dir=os.path.dirname(self.path))
        target = os.path.join(self.copy, os.path.basename(self.path))
        os.mkdir(target, 0o700)
        for root, dirs, files in os.walk(self.path):
            rel = os.path.relpath(root, self.path)
            for name in dirs:
                if os.path.islink(os.path.join(root, name)):
                    self._refuse('%s is a symlink; a pg_dump directory holds only regular files'
                                 % os.path.join(root, name))
                os.mkdir(os.path.join(target, rel, name), 0o700)
            for name in files:
                src = safe_path.open_nofollow(os.path.join(root, name), os.O_RDONLY, what='backup file')
                try:
                    if not stat.S_ISREG(os.fstat(src).st_mode):
                        self._refuse('%s is not a regular file' % os.path.join(root, name))
                    dst = os.open(os.path.join(target, rel, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    try:
                        while True:
                            block = os.read(src, CHUNK)
                            if not block:
                                break
                            os.write(dst, block)
                    finally:
                        os.close(dst)
                finally:
                    os.close(src)
        self.digest, self.size = backup_digest(target, 'directory')
        self.source = target

    def _sidecar(self):
        side = self.path + '.sha256'
        if not os.path.lexists(side):
            self._refuse('its checksum file %s is missing, so the backup cannot be verified (it may be incomplete '
                         'or not made by this module). Restore it by hand if you trust it, or write the checksum '
                         'with: sha256sum %s > %s' % (side, os.path.basename(self.path), os.path.basename(side)))
        expected = read_sidecar(side)
        if expected is None:
            self._refuse('%s is not a sha256sum-format checksum file (or is a symlink)' % side)
        if expected[1] != os.path.basename(self.path):
            self._refuse('its checksum file names %r, not %r; keep a backup and its .sha256 file under the names the '
                         'module gave them' % (expected[1], os.path.basename(self.path)))
        return expected
