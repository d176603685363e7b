# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Passwords for child processes (pg_dump, psql, pg_restore): a 0600 passfile in a private 0700 directory.

Never on argv: a libpq tool reads the password from PGPASSFILE (:class:`PassFile`, see
:meth:`dburl.DbUrl.passfile_line`) or PGPASSWORD. What a killed run left behind is removed by the next one
(:func:`sweep_passdirs`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat
import tempfile

from ansible_collections.homelab.migrations.plugins.module_utils import child
from ansible_collections.homelab.migrations.plugins.module_utils import safe_path


PASSDIR_PREFIX = '.homelab-pgpass-'


def sweep_passdirs(directory=None):
    """Remove passfile directories (and old-style passfiles) that a killed run of this user left behind.

    A directory is ``.homelab-pgpass-<pid>-*``: it is removed when that process is gone. A bare
    ``.homelab-pgpass-*`` file (written by versions before the private directory) is always removed.
    Only entries owned by the current user are touched. Returns the removed paths.
    """
    directory = directory or tempfile.gettempdir()
    removed = []
    try:
        entries = safe_path.lstat_entries(directory, lambda name: name.startswith(PASSDIR_PREFIX), skip=OSError)
    except OSError:
        return removed
    uid = os.geteuid()
    for name, path, st, _taken in entries:
        if st.st_uid != uid:
            continue
        try:
            if stat.S_ISDIR(st.st_mode):
                pid = name[len(PASSDIR_PREFIX):].split('-', 1)[0]
                if pid.isdigit() and child.pid_alive(int(pid)):
                    continue
                _empty_own_dir(path, uid)
                os.rmdir(path)
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                os.unlink(path)
            else:
                continue
        except OSError:
            continue
        removed.append(path)
    return removed


def _empty_own_dir(path, uid):
    """Unlink what is in the directory ``path`` through a handle opened without following a symlink (one swapped in
    since it was lstat'ed fails here), after checking the directory belongs to ``uid``. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != uid:
            raise OSError(errno.EPERM, 'not ours', path)
        for inner in os.listdir(fd):
            os.unlink(inner, dir_fd=fd)
    finally:
        os.close(fd)


class PassFile:
    """Context manager: a 0600 passfile in a private 0700 directory, both removed afterwards.

    The directory is named after this process (``.homelab-pgpass-<pid>-*``), so a later run removes
    what a killed run (SIGKILL) left behind (:func:`sweep_passdirs`, called on every entry).
    """

    def __init__(self, dburl, directory=None):
        self.dburl = dburl
        self.directory = directory
        self.path = None
        self.dir = None

    def __enter__(self):
        sweep_passdirs(self.directory)
        if self.dburl.password is not None:
            self.dir = tempfile.mkdtemp(prefix='%s%d-' % (PASSDIR_PREFIX, os.getpid()), dir=self.directory)
            try:
                os.chmod(self.dir, 0o700)
                path = os.path.join(self.dir, 'pgpass')
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    os.fchmod(fd, 0o600)
                    os.write(fd, self.dburl.passfile_line().encode('utf-8'))
                finally:
                    os.close(fd)
                self.path = path
            except BaseException:
                self.__exit__()
                raise
        return self

    def env(self):
        return self.dburl.libpq_env(passfile=self.path)

    def __exit__(self, *exc):
        for remove, path in ((os.unlink, self.path), (os.rmdir, self.dir)):
            if path:
                try:
                    remove(path)
                except OSError:
                    pass
        if self.dir and os.path.isdir(self.dir):  # pragma: no cover - something else was put there
            sweep_passdirs(os.path.dirname(self.dir))
        self.path = self.dir = None
        return False
