# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask a person on the controller's terminal, with a bound; never ask where nobody can answer.

Runs on the controller (action plugin, once for the play like ansible.builtin.pause). ansible.builtin.pause
ignores what is typed once it has a timeout, so this one asks through the same display.prompt_until with a
timeout and Enter completing the answer; a timeout counts as "no".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.homelab.migrations.plugins.module_utils.automation import (
    automation_context,
    controller_is_interactive,
)
from ansible_collections.homelab.migrations.plugins.plugin_utils.args import validated

display = Display()

ARGUMENT_SPEC = {
    'prompt': {'type': 'str', 'required': True},
    'timeout': {'type': 'int', 'default': 300},
    'ask': {'type': 'bool', 'default': True},
    'answers': {'type': 'list', 'elements': 'str', 'default': ['yes', 'y']},
}


class ActionModule(ActionBase):
    BYPASS_HOST_LOOP = True
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args, error = validated('homelab_migration_confirm', ARGUMENT_SPEC, self._task.args)
        if error:
            result.update(failed=True, msg=error)
            return result
        if args['timeout'] < 1:
            result.update(failed=True, msg='homelab_migration_confirm: timeout must be at least 1 second '
                                           '(got %s): a prompt without a bound can wait forever' % args['timeout'])
            return result
        context = automation_context(task_vars or {})
        result.update(changed=False, confirmed=False, asked=False, timed_out=False, answer=None,
                      runner=context['runner'], timeout=args['timeout'])
        if not args['ask']:
            result['reason'] = 'asking is switched off (migrate_all_prompt=false)'
            return result
        if context['runner']:
            result['reason'] = 'nobody to ask: %s' % context['reason']
            return result
        if not controller_is_interactive():
            result['reason'] = 'nobody to ask: ansible-playbook has no interactive terminal'
            return result
        prompt = '[%s]\n%s (waits %d s; no answer counts as no):' % (
            self._task.get_name().strip(), args['prompt'], args['timeout'])
        started = time.monotonic()
        try:
            typed = display.prompt_until(prompt, private=False, seconds=args['timeout'])
        except AnsibleError as exc:  # not interactive after all, Ctrl-C at the prompt, ...
            result.update(asked=True, reason='no answer: %s' % exc)
            return result
        waited = time.monotonic() - started
        answer = typed.decode('utf-8', 'replace') if isinstance(typed, bytes) else str(typed or '')
        result.update(asked=True, answer=answer.strip(), waited_seconds=round(waited, 1))
        if waited >= args['timeout']:
            result.update(timed_out=True, reason='no answer within %d s (counts as no)' % args['timeout'])
            return result
        wanted = [word.strip().lower() for word in args['answers']]
        result['confirmed'] = answer.strip().lower() in wanted
        result['reason'] = 'answered %s' % ('yes' if result['confirmed'] else 'not yes')
        return result
