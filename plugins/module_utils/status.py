# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report: read-only migration state of every service, in the DESIGN.md dashboard shape.

    report = build_report(specs, connect_timeout=10)

One connection per distinct server+database+user (connection.ConnectionPool), made read-only for the
session, so reading can never write. A failure of one service (unreachable database, bad layout,
an adapter bug) becomes that service's ``problems`` and ``status: error``; the others are still read.
Each entry is built by status_entry.py (the apply's ``status`` return is built by the same code).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.homelab.migrations.plugins.module_utils import connection as connection_mod
from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils import secrets
from ansible_collections.homelab.migrations.plugins.module_utils.connection import ConnectionPool
from ansible_collections.homelab.migrations.plugins.module_utils.plan import check_plan
from ansible_collections.homelab.migrations.plugins.module_utils.spec import dependency_order, validate_services
from ansible_collections.homelab.migrations.plugins.module_utils.status_entry import (
    add_findings, empty_entry, only_informs, problem_from_exception, recover, state_entry)
from ansible_collections.homelab.migrations.plugins.module_utils.status_summary import ERROR, summarize

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

# a status read never waits long behind a migration that holds a lock on a tracking table
STATUS_LOCK_TIMEOUT = '5s'
STATUS_APPLICATION = 'status'
PRECONNECT_WORKERS = 8


class PlanOptionError(ValueError):
    """The status module's ``plan`` option names a service that is not in ``services``."""


def password_forms(dburls):
    """Every spelling of every password of ``dburls`` (secrets.all_spellings), for no_log_values."""
    return secrets.all_spellings(list(dburls))


def _prepare(conn, prepared):
    """Make a pooled connection read-only and quick to give up on locks (once per connection)."""
    if any(seen is conn for seen in prepared):
        return
    with conn.cursor() as cur:  # one round trip
        cur.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; '
                    'SELECT pg_catalog.set_config(%s, %s, false)', ('lock_timeout', STATUS_LOCK_TIMEOUT))
    prepared.append(conn)


def _read_lock(conn, name, dburl, problems):
    """lock.lock_status on ``conn`` ({held, holder}); a failed read adds a problem when there is none yet."""
    if not conn.closed:
        try:
            return lock_mod.lock_status(conn, name)
        except Exception as exc:  # the connection broke between the two reads
            recover(conn)
            if not problems:
                problems.append(problem_from_exception(name, exc, dburl))
    return None


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
    try:
        adapter = get_adapter(spec, dburl)
        conn = pool.get(dburl, service=name)
        _prepare(conn, prepared)
    except Exception as exc:
        entry = empty_entry(spec)
        entry['problems'].append(problem_from_exception(name, exc, dburl))
        if plan_params is not None:
            entry['plan'] = _plan(spec, dburl, None, None, None, entry, plan_params)
        return entry

    state = None
    problems = []
    try:
        state = adapter.read_state(conn)
    except Exception as exc:
        problems.append(problem_from_exception(name, exc, dburl))
        recover(conn)
    entry = state_entry(spec, dburl, state, _read_lock(conn, name, dburl, problems), problems)
    if plan_params is not None:
        entry['plan'] = _plan(spec, dburl, conn, adapter, state, entry, plan_params, diff)
    if 'lint' in (entry.get('plan') or {}):  # the plan's own pre-flight: the findings of the run as planned
        entry['findings'] = entry['plan']['findings']
        entry['lint'] = entry['plan']['lint']
    elif preflight:
        add_findings(entry, adapter, conn, state, plan_params, dburl)
    return entry


def _plan(spec, dburl, conn, adapter, state, entry, plan_params, diff=False):
    readable = state is not None and conn is not None and not conn.closed
    why = '; '.join(p['message'] for p in entry['problems'] if not only_informs(p))
    result = check_plan(spec, dburl, conn if readable else None, adapter, state if readable else None, plan_params,
                        diff=diff, holder=entry['lock'].get('holder'), unreadable=why or None)
    if readable:
        recover(conn)
    result.pop('queries', None)
    return result


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
        messages = [p['message'] for p in entry['problems'] if not only_informs(p)]
        lines.append('%s: %s' % (name, '; '.join(messages) or 'error'))
    return lines
