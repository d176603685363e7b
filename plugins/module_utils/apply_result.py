# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The result of a plan or an apply run: its fields, the failure type, and how what happened becomes fields.

Used by plan.py (status and apply check mode), apply.py and status.py (describe_unexpected); imports
neither of them. A "run" below is a plan.Planner (or apply's run built on it) and is read for: ``name``,
``dburl``, ``params``, ``target``, ``check_mode``, ``before``, ``result``, ``warnings``, ``started`` (the
plan began to run), ``settled`` (what stayed was worked out from a re-read), ``interrupted_reason`` and
``interrupted_detail``.

The result fields are DESIGN.md's (module contracts and "Result fields the role relies on"):
``error_code``, ``untouched``, ``retryable``, ``committed``, ``failed_migration``, ``conflict``...
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import traceback

from ansible_collections.homelab.migrations.plugins.module_utils import audit as audit_mod
from ansible_collections.homelab.migrations.plugins.module_utils import interrupt


class ApplyFailure(Exception):
    """A failure with a complete, masked message (what failed and what to do next).

    ``code`` becomes the result's ``error_code``; ``retryable`` says the connection was lost or the server
    is (re)starting, so the same call may succeed later.
    """

    def __init__(self, message, code='apply_failed', retryable=False):
        super(ApplyFailure, self).__init__(message)
        self.code = code
        self.retryable = retryable


def _oneline(text):
    return ' '.join(str(text).split())


def describe_unexpected(name, exc, dburl, during='reading its migration state'):
    """A clear, masked message for an exception nobody expected (an adapter bug or an odd layout).

    ``dburl`` (a connection.DbUrl, or None) masks the password; the message names the innermost frame.
    """
    where = ''
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    if tb:
        frame = tb[-1]
        where = ' (at %s:%s in %s)' % (frame.filename.rsplit('/', 1)[-1], frame.lineno, frame.name)
    text = _oneline(dburl.scrub(str(exc))) if dburl is not None else _oneline(str(exc))
    return ('service %r: unexpected %s while %s: %s%s; check the service path and its migration files, '
            'and report this as a bug of homelab.migrations if they are fine'
            % (name, exc.__class__.__name__, during, text or '(no message)', where))


def new_result(name, tool, target):
    """The result dict of one run before anything happened (DESIGN.md return fields, all "nothing done")."""
    return {
        'changed': False,
        'service': name,
        'tool': tool,
        'target': target,
        'from_revision': None,
        'to_revision': None,
        'applied': [],
        'reverted': [],
        'lock_wait_seconds': 0.0,
        'duration_seconds': 0.0,
        'plan': {},
        'queries': [],
        'findings': [],
        # the fields the role decides on (DESIGN.md "Result fields the role relies on")
        'error_code': None,
        'untouched': True,
        'retryable': False,
        'committed': [],
        'failed_migration': None,
        'conflict': False,
        'unrecorded_changes': False,
        'schema_changes': [],
        'fingerprint': {'before': None, 'after': None},
    }


def failed_with(run, exc):
    """The masked message for ``exc`` that ended ``run`` (None for an interruption), its fields set.

    ApplyFailure: its code and retryable; interrupt.Interrupted, KeyboardInterrupt, SystemExit: the run's
    ``interrupted_reason`` (interruption() words the message); any other Exception is a bug: described, code
    ``apply_failed`` unless it carries an ``error_code``.
    """
    if isinstance(exc, ApplyFailure):
        run.result['error_code'] = exc.code
        run.result['retryable'] = bool(exc.retryable)
        return run.dburl.scrub(str(exc))
    if isinstance(exc, interrupt.Interrupted):
        run.interrupted_reason = exc.reason
        return None
    if isinstance(exc, Exception):  # a bug: still release, audit and answer without a traceback
        run.result['error_code'] = getattr(exc, 'error_code', None) or 'apply_failed'
        return describe_unexpected(run.name, exc, run.dburl, 'running the apply')
    run.interrupted_reason = 'interrupted (%s)' % exc.__class__.__name__
    return None


def interruption(run, outcome, error, reason):
    """(outcome, error) after a signal or the controller's death (``reason``, None when neither happened).

    Whatever the step said, the job was cancelled: outcome ``interrupted``, error_code ``interrupted``, and
    a message saying what stayed.
    """
    if reason is None:
        return outcome, error
    run.result['error_code'] = interrupt.ERROR_CODE
    committed = run.result['applied'] or run.result['reverted']
    if committed:
        detail = run.interrupted_detail or 'applied %s, reverted %s' % (run.result['applied'], run.result['reverted'])
        what = ('what this run had committed before the cancel stayed, anything still running was '
                'cancelled, and the lock released')
    elif run.started and not run.settled:
        detail = run.interrupted_detail or 'what stayed could not be re-read'
        what = 'the running statement was cancelled and the lock released'
    else:
        detail = run.interrupted_detail or 'stopped before any migration ran'
        what = 'the running statement was cancelled and rolled back and the lock released'
    return 'interrupted', run.dburl.scrub('service %r: %s; %s (%s)' % (run.name, reason, what, detail))


def closing_fields(run, outcome, error, started):
    """(outcome, error) with the duration (since ``started``, time.monotonic()) and what nothing proved."""
    run.result['duration_seconds'] = round(time.monotonic() - started, 3)
    if outcome == 'failed' and error is None:
        error = 'service %r: the run was interrupted' % run.name
        run.result['error_code'] = run.result['error_code'] or 'interrupted'
    if outcome in ('failed', 'interrupted') and run.started and not run.settled:
        run.result['untouched'] = False  # the plan began and nothing was re-read: nothing is proved
        run.result['unrecorded_changes'] = True
    return outcome, error


def shaped(run, outcome, error):
    """The result as returned: ``outcome``; ``failed`` and ``msg`` when ``error``; masked ``warnings``."""
    result = run.result
    result['outcome'] = outcome
    if error is not None:
        result['failed'] = True
        result['msg'] = error
    result['warnings'] = [run.dburl.scrub(w) for w in run.warnings]
    return result


def observed_changes(before, after):
    """(applied, reverted) between two ServiceStates: applied oldest first, reverted newest first."""
    before_set = set(before.applied)
    after_set = set(after.applied)
    applied = [rev for rev in after.applied if rev not in before_set]
    reverted = [rev for rev in reversed(before.applied) if rev not in after_set]
    return applied, reverted


def _reconcile(reported, observed):
    """Prefer the adapter's order when it agrees with the database; the database wins otherwise."""
    reported = [str(r) for r in (reported or [])]
    if observed is None:
        return reported, True
    if sorted(reported) == sorted(observed):
        return reported, True
    return list(observed), False


def record_changes(run, reported, details, after, failed):
    """applied / reverted / committed / changed / queries / to_revision after the plan ran.

    ``reported`` is the adapter's ApplyResult (None when it raised), ``details`` its ApplyError's details
    ({} otherwise), ``after`` the ServiceState re-read afterwards (None when unreadable): what the database
    shows wins over what the tool reported (with a warning when they disagree and nothing ``failed``).
    """
    result = run.result
    observed = (None, None) if after is None else observed_changes(run.before, after)
    rep_applied = reported.applied if reported is not None else details.get('applied', [])
    rep_reverted = reported.reverted if reported is not None else details.get('reverted', [])
    applied, ok1 = _reconcile(rep_applied, observed[0])
    reverted, ok2 = _reconcile(rep_reverted, observed[1])
    if not (ok1 and ok2) and not failed:
        run.warnings.append('the tool reported applied %s / reverted %s, the database shows applied %s / '
                            'reverted %s; the result reports what the database shows'
                            % (rep_applied, rep_reverted, applied, reverted))
    result['applied'] = applied
    result['reverted'] = reverted
    result['committed'] = list(applied) + list(reverted)
    result['changed'] = bool(applied or reverted)
    if reported is not None and reported.queries:
        result['queries'] = [run.dburl.scrub(q) for q in reported.queries]
    elif details.get('queries'):
        result['queries'] = [run.dburl.scrub(q) for q in details['queries']]
    if after is not None:
        result['to_revision'] = after.current_revision
    elif reported is not None and reported.to_revision is not None:
        result['to_revision'] = reported.to_revision
    else:
        result['to_revision'] = None


def write_audit(run, outcome, error):
    """Append the run's audit record to ``params['audit_log']`` (nothing without one); a write error is a warning."""
    path = run.params.get('audit_log')
    if not path:
        return
    r = run.result
    try:
        record = audit_mod.make_record(
            run.name, run.params.get('action') or 'apply', r['from_revision'], r['to_revision'],
            outcome=outcome, error=error, confirmation=run.params.get('confirmation'), scrub=run.dburl.scrub,
            applied=list(r['applied']), reverted=list(r['reverted']), duration_seconds=r['duration_seconds'],
            lock_wait_seconds=r['lock_wait_seconds'], target=run.target, tool=r['tool'],
            check_mode=run.check_mode, error_code=r['error_code'], untouched=r['untouched'],
            committed=list(r['committed']), failed_migration=r['failed_migration'],
            unrecorded_changes=r['unrecorded_changes'], schema_changes=list(r['schema_changes']))
        audit_mod.append_record(path, record)
    except Exception as exc:
        run.warnings.append('the audit record could not be written to %s: %s' % (path, exc))
