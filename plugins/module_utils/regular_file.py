# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a file of a service's tree without waiting and without running out of memory.

Status and plans read files that anyone with write access to a service's repository can make into
something else: a FIFO (open() waits for a writer forever), a symlink to /dev/zero or /dev/urandom (read()
never ends), a device, a huge file. ``read_regular`` opens without blocking (O_NONBLOCK), checks on the
opened descriptor that it is a regular file (so a swap between check and read changes nothing), and reads
at most ``limit`` bytes. A symlink to a regular file is followed (alembic and drizzle-kit follow them).

A refusal raises ``NotRegularFile`` / ``FileTooLarge``: both are OSError with a ``strerror`` that says what
the file is and what to do, so callers that already handle an unreadable file handle these the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat

MiB = 1024 * 1024
# Caps: far above any real journal / migration / revision file, far below the controller's memory.
JOURNAL_LIMIT = 16 * MiB
MIGRATION_LIMIT = 64 * MiB
CONFIG_LIMIT = 4 * MiB

_KINDS = (
    (stat.S_ISFIFO, 'a FIFO (named pipe)'),
    (stat.S_ISCHR, 'a character device'),
    (stat.S_ISBLK, 'a block device'),
    (stat.S_ISSOCK, 'a socket'),
    (stat.S_ISDIR, 'a directory'),
)


class NotRegularFile(OSError):
    """The path is a FIFO, a device, a socket or a directory (after following symlinks)."""


class FileTooLarge(OSError):
    """The file holds more than the cap."""


def kind_of(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def _target_note(path):
    if os.path.islink(path):
        try:
            return ' (a symlink to %s)' % os.readlink(path)
        except OSError:
            return ' (a symlink)'
    return ''


def read_regular(path, limit=MIGRATION_LIMIT, head=False):
    """The bytes of the regular file at ``path``; NotRegularFile / FileTooLarge / OSError otherwise.

    ``head`` True returns at most the first ``limit`` bytes of a regular file of any size instead."""
    flags = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0) | getattr(os, 'O_CLOEXEC', 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, 'is %s%s, not a regular file; it is refused rather than read (it '
                                 'could block or never end). Replace it with the real file'
                                 % (kind_of(info.st_mode), _target_note(path)), path)
        if info.st_size > limit and not head:
            raise FileTooLarge(errno.EFBIG, 'holds %d bytes, more than the %d bytes a file of this kind may have; '
                               'check that it is the right file' % (info.st_size, limit), path)
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(MiB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if head and total >= limit:
                return b''.join(chunks)[:limit]
            if total > limit:  # grew while being read
                raise FileTooLarge(errno.EFBIG, 'holds more than the %d bytes a file of this kind may have; check '
                                   'that it is the right file' % limit, path)
        return b''.join(chunks)
    finally:
        os.close(fd)


def is_regular(path):
    """True when ``path`` (symlinks followed) is a regular file; never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
