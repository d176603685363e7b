# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report: read-only migration state of every service, in the DESIGN.md dashboard shape.

    report = build_report(specs, connect_timeout=10)

One connection per distinct server+database+user (connection.ConnectionPool), made read-only for the
session, so reading can never write. A failure of one service (unreachable database, bad layout,
an adapter bug) becomes that service's ``problems`` and ``status: error``; the others are still read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import (
    PROBLEM_CODES, AdapterError, is_warning, problem)
from ansible_collections.homelab.migrations.plugins.module_utils.apply_result import describe_unexpected
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectError, ConnectionPool
from ansible_collections.homelab.migrations.plugins.module_utils.plan import check_plan
from ansible_collections.homelab.migrations.plugins.module_utils.spec import dependency_order, validate_services
from ansible_collections.homelab.migrations.plugins.module_utils.status_summary import (
    ERROR, PENDING, UP_TO_DATE, summarize)

# the status module's options besides ``services`` and the connection options
STATUS_OPTIONS = dict(
    fail_on_error=dict(type='bool', default=False),
    preflight=dict(type='bool', default=True),
    plan=dict(type='dict', options=dict(
        services=dict(type='list', elements='str'),
        target=dict(type='str'),
        allow_out_of_order=dict(type='bool', default=False),
        allow_modified=dict(type='bool', default=False),
        lock_wait=dict(type='int', default=60),
        transaction=dict(type='str', default='all', choices=['all', 'each']),
        allow_findings=dict(type='list', elements='str', default=[]),
        lock_timeout=dict(type='str'),
        statement_timeout=dict(type='str'),
    )),
    audit_log=dict(type='path'),  # each service's health state (module_utils.health_state)
)

# problems that describe the moment rather than the service: they do not make its status an error
INFORMATIONAL_CODES = ('locked',)

# a status read never waits long behind a migration that holds a lock on a tracking table
STATUS_LOCK_TIMEOUT = '5s'
STATUS_APPLICATION = 'status'
PRECONNECT_WORKERS = 8

_SQLSTATE_LOCK_NOT_AVAILABLE = '55P03'
_SQLSTATE_QUERY_CANCELED = '57014'


class PlanOptionError(ValueError):
    """The status module's ``plan`` option names a service that is not in ``services``."""


def password_forms(dburls):
    """Every spelling of every password of ``dburls`` (secrets.all_spellings), for no_log_values."""
    return secrets.all_spellings(list(dburls))


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
        'lock': {'held': False, 'holder': None},
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


def _prepare(conn, prepared):
    """Make a pooled connection read-only and quick to give up on locks (once per connection)."""
    if any(seen is conn for seen in prepared):
        return
    with conn.cursor() as cur:  # one round trip
        cur.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; '
                    'SELECT pg_catalog.set_config(%s, %s, false)', ('lock_timeout', STATUS_LOCK_TIMEOUT))
    prepared.append(conn)


def _recover(conn):
    """Leave the connection usable for the next service after an error (autocommit, no open transaction)."""
    try:
        if not conn.closed:
            conn.rollback()
            if not conn.autocommit:
                conn.autocommit = True
    except Exception:
        pass


def _read_lock(entry, conn, name, dburl):
    """``entry['lock']`` from lock.lock_status on ``conn``, and a ``locked`` problem when the lock is held."""
    problems = entry['problems']
    if not conn.closed:
        try:
            entry['lock'] = lock_mod.lock_status(conn, name)
        except Exception as exc:  # the connection broke between the two reads
            _recover(conn)
            if not problems:
                problems.append(problem_from_exception(name, exc, dburl))
    holder = entry['lock'].get('holder')
    if entry['lock'].get('held'):
        problems.append(problem('locked', 'service %r is being migrated right now: its lock is held by %s; '
                                          'this status may change when that run finishes'
                                % (name, lock_mod.describe_holder(holder))))


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


def service_entry(spec, dburl, pool, prepared=None, get_adapter=None, plan_params=None, diff=False,
                  preflight=True):
    """The report entry of one service. Never raises: failures become problems.

    With ``plan_params`` (apply options: target, allow_out_of_order, allow_modified, lock_wait) the
    entry also gets ``plan``: what homelab_migration_apply in check mode would report, planned from
    this very read (plan.check_plan); with ``diff`` too its ``diff`` (the SQL it would run).
    """
    if prepared is None:
        prepared = []
    if get_adapter is None:
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import get_adapter
    name = spec['name']
    entry = empty_entry(spec)
    problems = entry['problems']
    try:
        adapter = get_adapter(spec, dburl)
        conn = pool.get(dburl, service=name)
        _prepare(conn, prepared)
    except Exception as exc:
        problems.append(problem_from_exception(name, exc, dburl))
        if plan_params is not None:
            entry['plan'] = _plan(spec, dburl, None, None, None, entry, plan_params)
        return entry

    state = None
    try:
        state = adapter.read_state(conn)
    except Exception as exc:
        problems.append(problem_from_exception(name, exc, dburl))
        _recover(conn)
    _read_lock(entry, conn, name, dburl)
    if state is not None:
        _state_fields(entry, state, dburl)
    entry['status'] = entry_status(entry, state is not None)
    if plan_params is not None:
        entry['plan'] = _plan(spec, dburl, conn, adapter, state, entry, plan_params, diff)
    if 'lint' in (entry.get('plan') or {}):  # the plan's own pre-flight: the findings of the run as planned
        entry['findings'] = entry['plan']['findings']
        entry['lint'] = entry['plan']['lint']
    elif preflight and state is not None and state.pending and not conn.closed:
        _findings(entry, adapter, conn, state, plan_params, dburl)
    return entry


def _findings(entry, adapter, conn, state, plan_params, dburl):
    """Pre-flight findings of a plain upgrade to head(s) (what the status says is pending)."""
    plan_params = plan_params or {}
    options = {'transaction': plan_params.get('transaction') or 'all', 'lock_timeout': plan_params.get('lock_timeout'),
               'statement_timeout': plan_params.get('statement_timeout')}
    try:
        found = adapter.preflight(conn, state, [str(p) for p in state.pending], options, lint=True)
    except Exception as exc:
        _recover(conn)
        entry['lint'] = {'linter': None, 'ran': False,
                         'reason': 'the pre-flight checks failed: %s: %s'
                                   % (type(exc).__name__, _oneline(dburl.scrub(str(exc))))}
        return
    _recover(conn)
    entry['findings'] = [dict(f, message=dburl.scrub(f['message']),
                              statement=dburl.scrub(f['statement']) if f.get('statement') else None)
                         for f in found.get('findings') or []]
    entry['lint'] = found.get('lint')


def _plan(spec, dburl, conn, adapter, state, entry, plan_params, diff=False):
    readable = state is not None and conn is not None and not conn.closed
    why = '; '.join(p['message'] for p in entry['problems'] if not _only_informs(p))
    result = check_plan(spec, dburl, conn if readable else None, adapter, state if readable else None, plan_params,
                        diff=diff, holder=entry['lock'].get('holder'), unreadable=why or None)
    if readable:
        _recover(conn)
    result.pop('queries', None)
    return result


def _only_informs(item):
    """A problem that does not make the service an error: the moment (locked) or a warning."""
    return item['code'] in INFORMATIONAL_CODES or is_warning(item)


def entry_status(entry, state_read=True):
    if not state_read:
        return ERROR
    if not all(_only_informs(p) for p in entry['problems']):
        return ERROR
    return PENDING if entry['pending'] else UP_TO_DATE


def preconnect(pool, named_urls, workers=PRECONNECT_WORKERS):
    """Open the pool's connections (one per distinct server+database+user) in parallel.

    Connecting is most of a status run's time (TCP + TLS + SCRAM, several round trips each); in parallel,
    50 services on 50 remote databases cost a few connection times instead of 50. Failures stay in the
    pool (it remembers them) and are reported per service afterwards.
    """
    first = {}
    for name, dburl in named_urls:
        first.setdefault(dburl.server_key, (name, dburl))
    todo = list(first.values())
    if len(todo) < 2 or workers < 2:
        return
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                name, dburl = todo.pop(0)
            try:
                pool.get(dburl, service=name)
            except Exception:  # remembered by the pool (ConnectError) or raised again when the service is read
                pass

    threads = [threading.Thread(target=worker) for dummy in range(min(workers, len(todo)))]
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join()


def build_report(specs, urls=None, connect_timeout=connection_mod.DEFAULT_CONNECT_TIMEOUT, pool=None,
                 get_adapter=None, plan=None, diff=False, preflight=True):
    """Status of every service in ``specs`` (validated spec dicts, defaults filled).

    ``urls`` is {name: DbUrl} from spec.validate_services (computed when not given; a SpecError
    then propagates: the caller fails the task before touching anything). ``plan`` (the status
    module's option: services, target, allow_out_of_order, allow_modified, lock_wait) adds a
    ``plan`` to the entries of the services it names (all when ``services`` is None); with ``diff``
    each plan also holds its ``diff`` (the SQL the run would send), as the apply module's does.
    ``preflight`` False leaves out the pre-flight findings (module_utils/preflight/) and their lint.
    """
    plan_names = None
    plan_params = None
    if plan is not None:
        plan_names = plan.get('services')
        plan_params = dict((k, v) for k, v in plan.items() if k != 'services' and v is not None)
        plan_params['preflight'] = bool(preflight)
        known = [spec['name'] for spec in specs]
        unknown = [n for n in plan_names or [] if n not in known]
        if unknown:
            raise PlanOptionError('plan.services names %s, which %s not in services (%s)'
                                  % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are', ', '.join(known)))
    if urls is None:
        urls = validate_services(specs)
        dependency_order(specs)
    own_pool = pool is None
    if own_pool:
        pool = ConnectionPool(connect_timeout=connect_timeout, application=STATUS_APPLICATION)
    prepared = []
    services = {}
    try:
        preconnect(pool, [(spec['name'], urls[spec['name']]) for spec in specs])
        for spec in specs:
            wanted = plan_params is not None and (plan_names is None or spec['name'] in plan_names)
            services[spec['name']] = service_entry(spec, urls[spec['name']], pool, prepared, get_adapter,
                                                   plan_params if wanted else None, diff, preflight)
    finally:
        if own_pool:
            pool.close()
    return summarize(services)


def plan_diffs(report):
    """The planned services' diffs as one list for the module's ``diff`` (one entry per service that would
    change, headed with its name), or []."""
    out = []
    for name, entry in report['services'].items():
        plan = entry.get('plan') or {}
        item = plan.get('diff')
        if not item or not plan.get('changed'):
            continue
        out.append(dict(item, before_header='%s (now)' % name,
                        after_header='%s (after %s)' % (name, plan.get('target') or 'the run')))
    return out


def error_summary(report):
    """One line per service in error, for fail_on_error's message."""
    lines = []
    for name, entry in report['services'].items():
        if entry['status'] != ERROR:
            continue
        messages = [p['message'] for p in entry['problems'] if not _only_informs(p)]
        lines.append('%s: %s' % (name, '; '.join(messages) or 'error'))
    return lines
