# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_all role's work on its selected services, in dependency order (homelab_migration_run).

Per service: back up (and prune its older backups, in the same module run) -> move to the target revision
(pinned to the confirmed plan) -> health check (unverified until it passes). After a failed step: go back to
the revision the apply found under its lock, else restore the run's backup. Always: the service's audit record.
Then, with rollback scope ``run`` and a failed service, the services migrated earlier in this run go back,
newest first.

Each step is a module of this collection run on the managed host through ``run_module(name, args)``, which
returns the module's result (a dict; ``failed`` true when it failed). The decisions are
plugin_utils.recovery's and read the results' structured fields only (untouched, retryable, conflict,
fingerprint, unrecorded_changes), never a message's wording. A step that did not run is ``{}``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.homelab.migrations.plugins.plugin_utils import recovery as rec
from ansible_collections.homelab.migrations.plugins.plugin_utils.after import StatusAfter, reread_args
from ansible_collections.homelab.migrations.plugins.plugin_utils.selection import migrate_all_target
from ansible_collections.homelab.migrations.plugins.module_utils.run_record import (
    migrate_all_outcome, migrate_all_record)
from ansible_collections.homelab.migrations.plugins.plugin_utils.text import migrate_all_mask

BACKUP = 'homelab_pg_backup'
APPLY = 'homelab_migration_apply'
AUDIT = 'homelab_migration_audit'
HEALTH = 'homelab_migration_health'
STATUS = 'homelab_migration_status'


class StepFailed(Exception):
    """A step failed: ``result`` is its result (as a task would register it), ``step`` names it."""

    def __init__(self, result, step):
        super(StepFailed, self).__init__(step)
        self.result = result
        self.step = step


class Cancelled(BaseException):
    """The job was cancelled: a module said ``error_code: interrupted``, or the controller is gone.

    A BaseException so that no ``except Exception`` on the way turns it into a failed step: after a cancel
    nothing else runs (no going back, no restore, no further service), as when each step was a task.
    """


def _given(options):
    """``options`` without the unset ones (None or ''), as the role's ``default(omit, true)`` did."""
    return dict((key, value) for key, value in (options or {}).items() if value is not None and value != '')


class RoleRun(object):
    """One run over ``args['selected']`` (the homelab_migration_run action's validated arguments).

    ``run_module(name, args) -> dict`` runs a module of this collection; ``say(line)`` shows one line of
    progress. After ``run()``: ``results`` {name: outcome record fields}, ``migrated`` [{name, before,
    after, backup, apply}], ``records`` (the audit records as written), ``timings`` (one entry per module
    run: service, module, state/action, ``seconds`` wall time, ``duration_seconds`` the module's own figure
    or None), ``warnings`` (the modules' own), ``diffs`` (in diff mode: each apply's ``diff``, headed with its
    service), ``status`` (the migration status after the run, plugin_utils.after: the status before it with each
    moved service's entry from its last apply, services left in an unknown state read again) and ``error`` when
    writing an audit record failed or the job was cancelled (``cancelled``): the run stops there.
    ``controller_gone() -> str|None`` says whether the controller died (then nothing more runs).
    """

    def __init__(self, args, run_module, say, sleep=time.sleep, controller_gone=None, journal=None):
        self.args = args
        # journal: path(service) -> a private remote file for the apply's journal (service_step), read(path) -> its
        # facts (a list) or None when it cannot be read; None: no journal
        self.journal = journal
        self.controller_gone = controller_gone or (lambda: None)
        self.run_module = run_module
        self.say = say
        self.sleep = sleep
        self.specs = dict((spec.get('name'), spec) for spec in args['services'])
        self.results = {}
        self.migrated = []
        self.records = []
        self.error = None
        self.timings = []
        self.cancelled = False
        self.diffs = []
        self.warnings = []
        self.status = None
        self.after = StatusAfter()
        self._service = None

    # -- plumbing --------------------------------------------------------------------------------------

    def _module(self, name, module_args):
        gone = self.controller_gone()
        if gone:
            raise Cancelled('the controller is gone (%s): nothing more is run' % gone)
        started = time.time()
        try:
            result = self.run_module(name, module_args)
        except Exception as exc:  # pylint: disable=broad-except  # any failure to run it is a failed step
            result = {'failed': True, 'msg': '%s could not run: %s' % (name, exc)}
        if not isinstance(result, dict):
            result = {'failed': True, 'msg': '%s returned no result' % name}
        if result.get('failed') and ('module_stderr' in result or 'module_stdout' in result):
            result = self._crashed(name, result)
        if name == APPLY and isinstance(result.get('diff'), dict) and result['diff']:
            # --diff: what each apply (and going back) ran, as the apply task showed it
            self.diffs.append(dict(result['diff'], before_header='%s (before)' % self._service,
                                   after_header='%s (after)' % self._service))
        # the modules' warnings (a statement retried after lock_timeout, an audit record not written): shown by
        # the run task as they were by each step's task
        for warning in result.get('warnings') or []:
            # ansible-core 2.19 hands them over as WarningSummary (the text in .event.msg), older ones as strings
            text = warning if isinstance(warning, str) else getattr(getattr(warning, 'event', None), 'msg', None)
            if isinstance(text, str) and text and text not in self.warnings:
                self.warnings.append(text)
        self.after.note(self._service, name, module_args, result)
        inner = result.get('duration_seconds')
        self.timings.append({'service': self._service, 'module': name, 'state': module_args.get('state'),
                             'action': module_args.get('action'), 'seconds': round(time.time() - started, 3),
                             'duration_seconds': inner if isinstance(inner, (int, float)) else None,
                             'backup_seconds': (result.get('backup') or {}).get('duration_seconds')})
        gone = self.controller_gone()
        if gone:
            raise Cancelled('the controller is gone (%s) while %s ran: nothing more is run' % (gone, name))
        if result.get('error_code') == 'interrupted':
            raise Cancelled('%s was interrupted (%s): the job was cancelled, nothing more is run'
                            % (name, result.get('msg', 'a signal')))
        return result

    def _crashed(self, name, result):
        """A module that ended without a result (killed, crashed): its exit status and the last line it wrote join the
        message (masked), since the run task shows no module's stdout/stderr (a task per step did)."""
        said = []
        rc = result.get('rc')
        if isinstance(rc, int) and not isinstance(rc, bool):
            said.append('exit status %d%s' % (rc, ' (killed by signal %d)' % (rc - 128) if rc > 128 else
                                              ' (killed by signal %d)' % -rc if rc < 0 else ''))
        for key in ('module_stderr', 'module_stdout'):
            lines = [line.strip() for line in str(result.get(key) or '').splitlines() if line.strip()]
            if lines:
                said.append('%s: %s' % (key.replace('module_', ''), lines[-1][:300]))
                break
        if not said:
            return result
        secrets_ = [spec.get(field) for spec in self.args['services'] for field in ('database_url', 'health_check')
                    if isinstance(spec.get(field), str) and spec.get(field)]
        return dict(result, msg=migrate_all_mask('%s (%s: %s)' % (
            result.get('msg') or 'module failure', name, '; '.join(said)), secrets_))

    def _retried(self, name, module_args):
        """Like a task with ``until: succeeded or not retryable``, ``retries``/``delay`` from the recovery options
        (ansible's semantics: ``retries`` N > 0 means up to N + 1 attempts)."""
        retries = int(self.args['recovery']['retries'])
        attempts = retries + 1 if retries > 0 else 1
        for attempt in range(1, attempts + 1):
            result = self._module(name, module_args)
            result['attempts'] = attempt
            if not result.get('failed') or not result.get('retryable'):
                break
            if attempt < attempts:
                self._pause(float(self.args['recovery']['delay']))
        return result

    def _pause(self, seconds, step=0.25):
        """Wait ``seconds`` between attempts, in short steps: a controller that died meanwhile ends the run now
        (Cancelled), not after the pause."""
        deadline = time.time() + seconds
        while True:
            gone = self.controller_gone()
            if gone:
                raise Cancelled('the controller is gone (%s) between two attempts: nothing more is run' % gone)
            left = deadline - time.time()
            if left <= 0:
                return
            self.sleep(min(step, left))

    def _audit(self, records, keep=True):
        """Write audit records; those of the role (``keep``) go to ``records`` (the role's migrate_all_audit), the
        health states health records leave to the status after the run."""
        written = self._module(AUDIT, dict(_given({'audit_log': self.args['audit_log'],
                                                   'confirmation': self.args['confirmation']}), records=records))
        if written.get('failed'):
            raise StepFailed(written, 'writing the audit record')
        if keep:
            self._kept(written.get('records') or [])
        else:
            for record in written.get('records') or []:
                self.after.health(record)
        return written

    def _kept(self, records):
        """Records written for the role (by the audit module, or by an apply with ``record``): kept for
        migrate_all_audit; the health states they leave go to the status after the run."""
        self.records.extend(records)
        for record in records:
            self.after.health(record)

    def _apply_args(self, spec, target, **more):
        base = _given({'audit_log': self.args['audit_log'], 'confirmation': self.args['confirmation']})
        base.update(service=spec, target=target, lock_wait=self.args['apply']['lock_wait'])
        base.update(more)
        return base

    def _restore_args(self, name, path):
        return {'database_url': self.specs[name]['database_url'], 'state': 'restored', 'path': path,
                'service': name, 'clean': self.args['recovery']['restore_clean']}

    # -- the run ---------------------------------------------------------------------------------------

    def run(self):
        try:
            for name in self.args['selected']:
                self.service(name)
            self.rollback_run()
            self.status = self.after.report(self.args['status'], self.results, self._reread)
        except StepFailed as failure:
            # only a service's own audit record escapes its rescue: without it the run stops
            self.error = 'writing the audit record failed: %s' % failure.result.get('msg', 'unknown error')
        except Cancelled as exc:
            self.error = str(exc)
            self.cancelled = True
        return self

    def _reread(self, names):
        """The status module's read of ``names`` after the run (their state is not known from the applies)."""
        self._service = None
        return self._module(STATUS, reread_args(self.args['services'], names))

    def service(self, name):
        """One service: [backup (+ prune) -> apply -> health] rescue [go back, else restore] always [audit]."""
        self._service = name
        spec = self.specs[name]
        plan = (self.args['plans'] or {}).get(name)
        target = migrate_all_target(spec, self.args['action'], self.args['rollback_target'])
        before = plan.get('from_revision') if isinstance(plan, dict) else None
        steps = {'backup': {}, 'apply': {}, 'attempted': False}
        try:
            try:
                decision = rec.migrate_all_decide(name, self.args['services'], self.args['status'], plan,
                                                  self.results, self.args['rollback_scope'], self.args['selected'])
                self._work(name, spec, plan, target, before, decision, steps)
            except StepFailed:
                raise
            except Exception as exc:  # pylint: disable=broad-except  # a failure of ours is a failed step too
                raise StepFailed({'failed': True, 'msg': 'internal error: %s' % exc}, 'working on %s' % name)
        except StepFailed as failure:
            self._rescue(name, failure, before, steps)
            steps.pop('recorded', None)
        recorded = steps.get('recorded')
        if recorded is None:
            self._audit([migrate_all_record(self.results.get(name) or {}, name, self.args['action'], target,
                                            self.args['run_id'])])
        elif recorded.get('record_error'):
            raise StepFailed({'failed': True, 'msg': recorded['record_error']}, 'writing the audit record')
        else:
            self._kept(recorded.get('records') or [])

    def _work(self, name, spec, plan, target, before, decision, steps):
        action = decision.get('action')
        if action == 'run':
            pinned = rec.migrate_all_pinned(plan, target)
            # one module run (below) backs up and moves the service: both lines come before it
            self.say('%s: backing up the database' % name)
            self.say('%s: moving it %s -> %s' % (name, before or '(none)', pinned['target']))
            apply_options = _given(self.args['apply'])
            apply_options.pop('lock_wait', None)
            apply_args = self._apply_args(spec, pinned['target'], action=self.args['action'], **dict(
                apply_options, **_given({'expect_from': pinned['expect_from']})))
            # one module run: the backup (homelab_pg_backup's code, pruning included), the apply, and - when no
            # health check comes after it - the service's audit record (service_step)
            apply_args['backup'] = dict(_given({'format': self.args['backup']['format']}),
                                        dest=self.args['backup']['dest'], backup=spec.get('backup') or 'auto',
                                        lock_wait_timeout=self.args['backup']['lock_wait_timeout'], **self._keep())
            if not self._check_health(name, spec, action):
                apply_args['record'] = {'run_id': self.args['run_id'], 'target': target,
                                        'reason': decision.get('reason') or ''}
            journal = self.journal.path(name) if self.journal else None
            if journal:
                apply_args['journal'] = journal
            result = self._module(APPLY, apply_args)
            if journal and result.get('failed') and 'error_code' not in result:
                # the module ended without its result (killed): what its journal says it did is known
                result = rec.migrate_all_journal_result(result, self.journal.read(journal))
                self.warnings.extend(result.pop('warnings', None) or [])
                if result.pop('record_unconfirmed', False) and not self.journal.logged(self.args['audit_log'],
                                                                                       result['records']):
                    del result['records']  # killed before its record reached the log: the run writes it (service)
            taken = result.get('backup') if isinstance(result.get('backup'), dict) else {}
            steps['backup'] = taken
            if taken.get('failed'):  # the apply did not start (error_code backup_failed, untouched)
                raise StepFailed(taken, 'backing up the database of %s' % name)
            # no backup field: the module ended without its result and its journal said nothing: the apply may have run
            steps['attempted'] = True
            steps['apply'] = result
            if result.get('failed'):
                raise StepFailed(result, 'moving %s to the target revision' % name)
            if 'records' in result or 'record_error' in result:
                steps['recorded'] = result
        if self._check_health(name, spec, action):
            self._health(name, spec, steps['apply'].get('to_revision', before) if steps['apply'] else before)
        outcome = migrate_all_outcome(decision, before, steps['backup'], steps['apply'], steps['attempted'])
        self.results[name] = outcome
        if outcome['outcome'] == 'success':
            self.migrated.append({
                'name': name, 'before': rec.migrate_all_back_target(steps['apply'], before), 'after': outcome['to'],
                'backup': outcome['backup'], 'apply': {'fingerprint': steps['apply'].get('fingerprint') or {},
                                                       'unrecorded_changes': False}})

    def _check_health(self, name, spec, action):
        """A service with a health check is checked when it was migrated, or when its last check did not pass
        (failed, or cut short): it stays unverified until a check passes, even with nothing pending."""
        if not spec.get('health_check'):
            return False
        state = (((self.args['status'].get('services') or {}).get(name) or {}).get('health') or {}).get('state')
        return action == 'run' or (action == 'unchanged' and state == 'unverified')

    def _health(self, name, spec, revision):
        url = spec['health_check']
        health_record = {'service': name, 'action': 'health_check', 'to': revision, 'run_id': self.args['run_id'],
                         'source': 'health'}
        if self.args['audit_log']:
            self._audit([dict(health_record, outcome='unverified', health='unverified')], keep=False)
        self.say('%s: checking its health' % name)
        options = self.args['health']
        health = self._module(HEALTH, {'url': url, 'timeout': options['timeout'], 'retries': options['retries'],
                                       'delay': options['delay'], 'validate_certs': options['validate_certs']})
        try:
            status = int(health.get('status', -1))
        except (TypeError, ValueError):
            status = -1
        if health.get('failed') or not 200 <= status < 300:
            answer = ('HTTP %s' % status) if status > 0 else (health.get('reason') or health.get('msg') or 'no answer')
            msg = 'health check %s did not answer 2xx after the migrations (%s, %s attempt(s))' % (
                url, answer, health.get('attempts', 1))
            raise StepFailed({'failed': True, 'msg': migrate_all_mask(msg, url)},
                             'checking the health of %s' % name)
        if self.args['audit_log']:
            self._audit([dict(health_record, outcome='success', health='passed')], keep=False)

    def _keep(self):
        """The backup step's keep_days / keep_count (those above 0; 0 keeps all): homelab_pg_backup prunes the
        service's older backups after the new one is written and verified, in the same module run (a failed or
        skipped backup prunes nothing)."""
        keep = dict((key, int(self.args['backup'][key] or 0)) for key in ('keep_days', 'keep_count'))
        return dict((key, value) for key, value in keep.items() if value > 0)

    def _rescue(self, name, failure, before, steps):
        """After a failed step: go back to where the apply found the service under its lock, else restore the
        run's backup, unless the apply proved it changed nothing (then both would undo another run's work)."""
        apply, backup = steps['apply'], steps['backup']
        undo_needed = rec.migrate_all_undo_needed(apply, steps['attempted'])
        error = '%s (step: %s)' % (rec.migrate_all_failure(failure.result), failure.step)
        back_to = rec.migrate_all_back_target(apply, before)
        pin = rec.migrate_all_back_pin(apply)
        attempted = steps['attempted'] and not rec.migrate_all_untouched(apply)
        back, restore = {}, {}
        if undo_needed:
            self.say('%s: failed while %s; going back to %s' % (name, failure.step, back_to))
            back = self._retried(APPLY, self._apply_args(
                self.specs[name], back_to, allow_out_of_order=True, allow_modified=True, action='rollback',
                **({'expect_from': pin} if pin else {})))
        if (undo_needed and not rec.migrate_all_back_verified(back, apply) and not back.get('conflict')
                and backup.get('path')):
            self.say('%s: restoring the backup %s' % (name, backup['path']))
            restore = self._retried(BACKUP, self._restore_args(name, backup['path']))
        self.results[name] = rec.migrate_all_recovery(error, back_to, attempted, backup, apply, back, restore,
                                                      undo_needed)

    def rollback_run(self):
        """Rollback scope ``run``: a service failed, so those migrated earlier in this run go back, newest first."""
        if self.args['rollback_scope'] != 'run':
            return
        for done in reversed(self.migrated):
            failed = [n for n, r in self.results.items() if r.get('outcome') == 'failed']
            if not failed:
                return
            because = 'migrate_all_rollback_scope is run and %s failed' % ', '.join(failed)
            self._rollback_one(done, because)

    def _rollback_one(self, done, because):
        name = self._service = done['name']
        before = done.get('before') or 'base'
        self.say('%s: going back to %s (migrate_all_rollback_scope=run)' % (name, before))
        undo, restore = {}, {}
        undo = self._retried(APPLY, self._apply_args(self.specs[name], before, allow_out_of_order=True,
                                                     allow_modified=True, action='rollback',
                                                     expect_from=done.get('after') or ''))
        undone = not undo.get('failed') and rec.migrate_all_back_verified(undo, done.get('apply') or {})
        if not undone and done.get('backup') and not undo.get('conflict'):
            self.say('%s: restoring the backup %s' % (name, done['backup']))
            restore = self._retried(BACKUP, self._restore_args(name, done['backup']))
        self.results[name] = rec.migrate_all_run_rollback(self.results.get(name), done, undo, restore, because)
        self._audit([migrate_all_record(self.results[name], name, 'rollback', before, self.args['run_id'],
                                        scope='run')])
