# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One service's entry of the status report (the DESIGN.md dashboard shape), from what was read.

    entry = state_entry(spec, dburl, state, lock, problems)     # revisions, counts, problems, lock, status
    add_findings(entry, adapter, conn, state, options, dburl)   # pre-flight findings of what is pending

The one builder of an entry: status.py builds each service's entry with it from its own read, and the apply
(apply_verify.py) builds the ``status`` it returns from the state it re-read under its lock after the run, so
the two cannot drift apart. Nothing here reads the database but ``add_findings`` (the adapter's pre-flight,
read only). Shape::

    {status: up_to_date|pending|error, tool, current_revision, latest_revision, applied: int, pending: int,
     pending_migrations: [str], problems: [{code, message[, severity]}],
     lock: {held: bool, holder: {pid, application_name, client_addr, since} | null},
     findings: [{migration, statement, code, severity, message, source}], lint: {...} (when findings were sought)}
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    PROBLEM_CODES, AdapterError, is_warning, problem)
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import describe_unexpected
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectError
from ansible_collections.homelab.migrations.plugins.module_utils.status_summary import ERROR, PENDING, UP_TO_DATE

# problems that describe the moment rather than the service: they do not make its status an error
INFORMATIONAL_CODES = ('locked',)

NOT_LOCKED = {'held': False, 'holder': None}

_SQLSTATE_LOCK_NOT_AVAILABLE = '55P03'
_SQLSTATE_QUERY_CANCELED = '57014'


def empty_entry(spec):
    """A service entry before anything is known (also the shape of an unreachable service)."""
    return {
        'status': ERROR,
        'tool': spec.get('tool'),
        'current_revision': None,
        'latest_revision': None,
        'applied': 0,
        'pending': 0,
        'pending_migrations': [],
        'problems': [],
        'lock': dict(NOT_LOCKED),
        'findings': [],
    }


def _is_psycopg2_error(exc, *classes):
    psycopg2 = connection_mod.psycopg2
    if psycopg2 is None:
        return False
    wanted = tuple(getattr(psycopg2, name) for name in classes) or (psycopg2.Error,)
    return isinstance(exc, wanted)


def _oneline(text):
    return ' '.join(str(text).split())


def _caused_by_lock_timeout(exc):
    """True when a lock_timeout / statement cancel is somewhere in the exception's cause chain."""
    seen = 0
    while exc is not None and seen < 10:
        if getattr(exc, 'pgcode', None) in (_SQLSTATE_LOCK_NOT_AVAILABLE, _SQLSTATE_QUERY_CANCELED):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def problem_from_exception(name, exc, dburl):
    """Map an exception from read_state/lock_status to a {code, message} problem."""
    if isinstance(exc, AdapterError):
        code = exc.code if exc.code in PROBLEM_CODES else 'bad_config'
        message = _oneline(dburl.scrub(str(exc)))
        if name not in message:
            message = 'service %r: %s' % (name, message)
        if _caused_by_lock_timeout(exc):
            code = 'locked'
            message += ' (a running migration holds a lock on it; run the status again when it has finished)'
        return problem(code, message)
    if isinstance(exc, ConnectError):
        return problem('unreachable', 'service %r: %s' % (name, _oneline(str(exc))))
    if _is_psycopg2_error(exc):
        pgcode = getattr(exc, 'pgcode', None)
        text = _oneline(dburl.scrub(str(exc).strip())) or exc.__class__.__name__
        if pgcode in (_SQLSTATE_LOCK_NOT_AVAILABLE, _SQLSTATE_QUERY_CANCELED):
            return problem('locked', 'service %r: the migration tables are locked by a running migration (%s); '
                                     'run the status again when it has finished' % (name, text))
        if connection_mod.is_connection_lost(exc):
            return problem('unreachable', 'service %r: lost the connection to %s: %s (check that the server is '
                                          'running and reachable)' % (name, dburl.masked, text))
        return problem('bad_config', 'service %r: the database refused a read of the migration state: %s '
                                     '(check version_table/migrations_table/schema settings and the '
                                     'permissions of the database user)' % (name, text))
    return problem('bad_config', describe_unexpected(name, exc, dburl))


def recover(conn):
    """Leave the connection usable for the next read after an error (autocommit, no open transaction)."""
    try:
        if not conn.closed:
            conn.rollback()
            if not conn.autocommit:
                conn.autocommit = True
    except Exception:
        pass


def _state_fields(entry, state, dburl):
    """The entry's revisions, counts and problems from a ServiceState (adapters/base.py)."""
    entry['current_revision'] = state.current_revision
    entry['latest_revision'] = state.latest_revision
    entry['applied'] = len(state.applied)
    entry['pending'] = len(state.pending)
    entry['pending_migrations'] = [str(p) for p in state.pending]
    for item in state.problems:
        code = item.get('code') if isinstance(item, dict) else None
        message = item.get('message') if isinstance(item, dict) else str(item)
        entry['problems'].append(problem(code if code in PROBLEM_CODES else 'bad_config',
                                         _oneline(dburl.scrub(message or code or 'unknown problem')),
                                         severity='warning' if is_warning(item) else None))


def state_entry(spec, dburl, state, lock=None, problems=()):
    """The entry of one service: ``state`` (a ServiceState, None when it could not be read), ``lock`` (what
    lock.lock_status said; None: not held) and ``problems`` ({code, message} of a failed read, first).
    Without findings (add_findings)."""
    entry = empty_entry(spec)
    entry['problems'].extend(problems)
    entry['lock'] = lock or dict(NOT_LOCKED)
    if entry['lock'].get('held'):
        entry['problems'].append(problem('locked', 'service %r is being migrated right now: its lock is held by '
                                                   '%s; this status may change when that run finishes'
                                         % (spec['name'], lock_mod.describe_holder(entry['lock'].get('holder')))))
    if state is not None:
        _state_fields(entry, state, dburl)
    entry['status'] = entry_status(entry, state is not None)
    return entry


def add_findings(entry, adapter, conn, state, options, dburl):
    """``entry['findings']`` and ``entry['lint']``: the pre-flight findings (module_utils/preflight/) of a plain
    upgrade to head(s), what the status calls pending, read on ``conn`` (left usable, autocommit). Nothing
    when nothing is pending or ``conn`` is closed. ``options``: transaction, lock_timeout, statement_timeout
    (the apply options; None for their defaults). Never raises for a failed check: ``lint`` says why."""
    if state is None or not state.pending or conn is None or conn.closed:
        return
    options = options or {}
    options = {'transaction': options.get('transaction') or 'all', 'lock_timeout': options.get('lock_timeout'),
               'statement_timeout': options.get('statement_timeout')}
    try:
        found = adapter.preflight(conn, state, [str(p) for p in state.pending], options, lint=True)
    except Exception as exc:
        recover(conn)
        entry['lint'] = {'linter': None, 'ran': False,
                         'reason': 'the pre-flight checks failed: %s: %s'
                                   % (type(exc).__name__, _oneline(dburl.scrub(str(exc))))}
        return
    recover(conn)
    entry['findings'] = [dict(f, message=dburl.scrub(f['message']),
                              statement=dburl.scrub(f['statement']) if f.get('statement') else None)
                         for f in found.get('findings') or []]
    entry['lint'] = found.get('lint')


def only_informs(item):
    """A problem that does not make the service an error: the moment (locked) or a warning."""
    return item['code'] in INFORMATIONAL_CODES or is_warning(item)


def entry_status(entry, state_read=True):
    """up_to_date / pending / error of an entry whose ``problems`` and ``pending`` are filled."""
    if not state_read:
        return ERROR
    if not all(only_informs(p) for p in entry['problems']):
        return ERROR
    return PENDING if entry['pending'] else UP_TO_DATE
