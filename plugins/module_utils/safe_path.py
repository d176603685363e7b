# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files only the owner can touch: the checks for the backup directory, the audit log and report paths.

A directory we write into (or restore from) must belong to the user running the module (or root) and
must not be writable by group or others: anyone else who can write there can swap a file between our
check and our use. Its ancestors may be writable by others only with the sticky bit (as ``/tmp``).
The final component must not be a symlink (opened with ``O_NOFOLLOW``); entries are listed by ``lstat``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat


class UnsafePathError(OSError):
    """A path another user could swap; the message says how to fix it."""


def _who(uid):
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):  # pragma: no cover - a uid without a name
        return 'uid %d' % uid


def check_dir(path, what, ancestors=True):
    """Refuse ``path`` (an existing directory) when another user could change what is in it.

    ``what`` names it in the message (e.g. ``'backup directory (dest)'``). Returns the lstat result.
    """
    path = os.path.abspath(path)
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UnsafePathError(exc.errno, '%s %s cannot be read: %s' % (what, path, exc.strerror))
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(errno.ELOOP, '%s %s is a symlink; give the real directory (%s), so nobody can point it '
                              'elsewhere' % (what, path, os.path.realpath(path)))
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(errno.ENOTDIR, '%s %s is not a directory' % (what, path))
    if st.st_uid not in (me, 0):
        raise UnsafePathError(errno.EPERM, '%s %s belongs to %s, not to %s who runs this: that user could replace the '
                              'files in it; chown %s %s (or choose a directory of your own)'
                              % (what, path, _who(st.st_uid), _who(me), _who(me), path))
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(errno.EPERM, '%s %s is writable by %s (mode %04o): another user could replace the files '
                              'in it; chmod go-w %s (0700 for backups)'
                              % (what, path, 'others' if st.st_mode & stat.S_IWOTH else 'its group',
                                 stat.S_IMODE(st.st_mode), path))
    if ancestors:
        _check_ancestors(path, what, me)
        real = os.path.realpath(path)
        if real != path:  # a symlinked parent: the directories it leads through must be safe as well
            _check_ancestors(real, what, me)
    return st


def _check_ancestors(path, what, me):
    """Every parent of ``path``: a directory only its owner (``me`` or root) can change, or sticky (as /tmp);
    a symlink owned by ``me`` or root (another user's symlink, as one put in /tmp, can be pointed elsewhere
    between our check and our use; the kernel's protected_symlinks is not always on)."""
    top = path
    parent = os.path.dirname(path)
    while parent and parent != path:
        pst = os.lstat(parent)
        if stat.S_ISLNK(pst.st_mode):
            if pst.st_uid not in (me, 0):
                raise UnsafePathError(errno.EPERM, '%s %s is reached through %s, a symlink owned by %s, who could '
                                      'point it elsewhere; give the real path (%s)'
                                      % (what, top, parent, _who(pst.st_uid), os.path.realpath(top)))
        elif pst.st_uid not in (me, 0) or (pst.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                                           and not pst.st_mode & stat.S_ISVTX):
            raise UnsafePathError(errno.EPERM, '%s %s is inside %s, which %s could rename or replace (owner %s, '
                                  'mode %04o); use a directory whose parents only you or root can change'
                                  % (what, top, parent, 'another user', _who(pst.st_uid),
                                     stat.S_IMODE(pst.st_mode)))
        path, parent = parent, os.path.dirname(parent)


def check_parent(path, what):
    """Check the directory that holds ``path`` (which may not exist yet) and that ``path`` is no symlink."""
    path = os.path.abspath(path)
    check_dir(os.path.dirname(path), 'the directory of %s' % what)
    if os.path.islink(path):
        raise UnsafePathError(errno.ELOOP, '%s %s is a symlink; give the real file (%s) so nobody can point it '
                              'elsewhere' % (what, path, os.path.realpath(path)))


def open_nofollow(path, flags, mode=0o600, what='file'):
    """``os.open`` with ``O_NOFOLLOW | O_CLOEXEC``; a symlink as the final component is refused clearly."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(errno.ELOOP, '%s %s is a symlink; refusing to follow it (give the real file)'
                                  % (what, path))
        raise


def lstat_entries(directory, accept, skip=FileNotFoundError):
    """The entries of ``directory`` whose names ``accept`` takes, seen by ``os.lstat`` (a symlink is itself).

    Returns an iterator of ``(name, path, stat_result, accept(name))`` for every name where ``accept(name)`` is
    truthy (a regex ``match`` or a predicate). The directory is listed at once (OSError when it cannot be); each
    entry is lstat'ed only as the caller reaches it, so what the caller acts on is as fresh as one ``lstat`` just
    before. An entry whose ``lstat`` raises ``skip`` (default: it is gone) is left out; other errors raise.
    """
    return _lstat_each(directory, os.listdir(directory), accept, skip)


def _lstat_each(directory, names, accept, skip):
    for name in names:
        taken = accept(name)
        if not taken:
            continue
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except skip:
            continue
        yield name, path, st, taken
