# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Back up, migrate and record the migrate_all role's selected services in one task (plugin_utils.run).

Runs on the controller; each step is a module of this collection on the managed host (``_execute_module``).
Shows one line per service per step at default verbosity instead of a task per step.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.plugin_utils.args import validated
from ansible_collections.homelab.migrations.plugins.plugin_utils.run import RoleRun
from ansible_collections.homelab.migrations.plugins.plugin_utils.text import migrate_all_mask

display = Display()

ARGUMENT_SPEC = {
    'services': {'type': 'list', 'elements': 'dict', 'required': True, 'no_log': False},
    'selected': {'type': 'list', 'elements': 'str', 'required': True},
    'plans': {'type': 'dict', 'default': {}},
    'status': {'type': 'dict', 'required': True},
    'run_id': {'type': 'str', 'required': True},
    'confirmation': {'type': 'str', 'default': ''},
    'action': {'type': 'str', 'default': 'apply', 'choices': ['apply', 'rollback']},
    'rollback_target': {'type': 'str'},
    'rollback_scope': {'type': 'str', 'default': 'service', 'choices': ['service', 'run']},
    'audit_log': {'type': 'str', 'default': ''},
    'backup': {'type': 'dict', 'required': True, 'options': {
        'dest': {'type': 'str', 'required': True},
        'format': {'type': 'str', 'default': 'custom'},
        'lock_wait_timeout': {'type': 'int', 'default': 30},
        'keep_days': {'type': 'int', 'default': 0},
        'keep_count': {'type': 'int', 'default': 0}}},
    'apply': {'type': 'dict', 'default': {}},
    'recovery': {'type': 'dict', 'default': {}, 'options': {
        'retries': {'type': 'int', 'default': 5},
        'delay': {'type': 'float', 'default': 3},
        'restore_clean': {'type': 'str', 'default': 'database'}}},
    'health': {'type': 'dict', 'default': {}, 'options': {
        'timeout': {'type': 'raw', 'default': 10},
        'retries': {'type': 'int', 'default': 3},
        'delay': {'type': 'raw', 'default': 2},
        'validate_certs': {'type': 'bool', 'default': True}}},
}


class _Journal(object):
    """The apply's journal (homelab_migration_apply ``journal``) in this task's private remote temporary directory:
    ``path(service)``, and ``read(path)`` -> its facts (one dict per line; a line cut short by a kill is left out),
    or None when it cannot be read (then nothing is known from it)."""

    def __init__(self, action, task_vars):
        self.action = action
        self.task_vars = task_vars

    def path(self, service):
        shell = self.action._connection._shell
        tmpdir = shell.tmpdir or self.action._make_tmp_path()
        return shell.join_path(tmpdir, 'homelab-journal-%s.jsonl' % service)

    def _text(self, path):
        read = self.action._execute_module(module_name='ansible.builtin.slurp', module_args={'src': path},
                                           task_vars=self.task_vars)
        if read.get('failed') or not isinstance(read.get('content'), str):
            return None
        return base64.b64decode(read['content']).decode('utf-8', 'replace')

    def read(self, path):
        text = self._text(path)
        if text is None:
            return None
        lines = text.splitlines()
        facts = []
        for number, line in enumerate(lines, 1):
            try:
                facts.append(json.loads(line))
            except ValueError:
                if number < len(lines) or text.endswith('\n'):
                    return None  # a whole line that is no JSON: the journal is not to be trusted at all
                # the last line, cut short by the kill: that step was not noted (the module noted it before doing it)
        return facts

    def logged(self, audit_log, records):
        """Whether every one of ``records`` (as built) is a line of ``audit_log`` (True without an audit log)."""
        if not audit_log:
            return True
        lines = (self._text(audit_log) or '').splitlines()
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return all(json.loads(json.dumps(record, default=str)) in found for record in records)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args, error = validated('homelab_migration_run', ARGUMENT_SPEC, self._task.args, migrate_all_mask)
        if error:
            result.update(failed=True, msg=error)
            return result
        args['apply'].setdefault('lock_wait', 60)
        if self._task.check_mode:
            result.update(changed=False, skipped=True, results={}, migrated=[], records=[], timings=[], cancelled=False,
                          status=args['status'], msg='check mode: nothing is backed up, migrated or recorded')
            return result

        # the modules watch ansible-playbook too, even when they start after it died (then they stop at once);
        # the mark carries this machine's boot id, so a module on another machine ignores it
        mark = interrupt.controller_mark()
        if mark:
            self._task.environment = list(self._task.environment or []) + [{interrupt.CONTROLLER_ENV: mark}]

        def run_module(name, module_args):
            return self._execute_module(module_name='homelab.migrations.' + name, module_args=module_args,
                                        task_vars=task_vars)

        # ansible-core 2.19 runs this worker in its own session: when ansible-playbook is killed, the worker
        # lives on; it must not go on to the next step (a go-back, a restore, the next service) on its own
        # (its parent is ansible-playbook itself; the processes above it may end without ending the job)
        watched = interrupt.ancestors()[:1]

        def controller_gone():
            gone = interrupt.gone(watched)
            return '%s (pid %d) ended' % (gone[1], gone[0]) if gone else None

        try:
            done = RoleRun(args, run_module, display.display, controller_gone=controller_gone,
                           journal=_Journal(self, task_vars)).run()
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.update(
            changed=any(r.get('applied') or r.get('reverted') or r.get('restored') for r in done.results.values()),
            cancelled=done.cancelled)
        if done.error:
            # the task fails and the play stops here (the role reads nothing more of it): the callback prints the
            # whole result of a failed task, so it holds the error once and each service's outcome, not every
            # record, result and timing again (each repeating the error)
            result.update(failed=True, msg=migrate_all_mask(done.error), outcomes=dict(
                (name, r.get('outcome')) for name, r in done.results.items()))
        else:
            result.update(results=done.results, migrated=done.migrated, records=done.records, timings=done.timings,
                          status=done.status)
        if done.warnings:
            result['warnings'] = migrate_all_mask(done.warnings)
        if done.diffs:
            # --diff: the SQL each apply ran (shown by the callback when the task changed something)
            result['diff'] = done.diffs
        return result
