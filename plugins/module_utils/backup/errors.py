# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors of homelab_pg_backup and the interrupt guard around a running dump or restore.

:class:`BackupError` carries a message that is already masked and says what to do next, plus the
result fields (``error_code``, ``untouched``, ``retryable``...) the module returns with it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt


class BackupError(Exception):
    """A failure with a message that is already masked and says what to do next."""

    def __init__(self, message, **result):
        super(BackupError, self).__init__(message)
        self.result = result


class Interrupted(BackupError):
    """SIGTERM arrived while a backup or restore ran."""


class TermGuard(interrupt.Guard):
    """SIGINT, SIGHUP, SIGTERM or the controller's death (module_utils.interrupt) become Interrupted while it
    is active: the running pg_dump / pg_restore / psql group is killed (child.finish), temp files removed, and
    the result says interrupted."""

    def __init__(self):
        super(TermGuard, self).__init__(make_exception=lambda reason, signum: Interrupted(
            '%s; the running pg_dump/pg_restore/psql was stopped and its unfinished work removed or rolled back'
            % reason))
