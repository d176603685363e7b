# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument check this collection's action plugins share: ansible-core's own ArgumentSpecValidator.

Private to the collection (plugin_utils): not a public API.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


def validated(action_name, argument_spec, task_args, mask=None):
    """Check ``task_args`` (dict) against ``argument_spec`` (a module-style spec dict).

    Returns ``(params, None)`` with defaults filled in, or ``(None, message)`` naming ``action_name`` and every
    error ansible's validator reported; ``mask`` (a str -> str callable) is applied to the message, for a spec
    whose values can hold a secret.
    """
    validation = ArgumentSpecValidator(argument_spec).validate(task_args)
    if validation.error_messages:
        message = '%s: %s' % (action_name, '; '.join(validation.error_messages))
        return None, (mask(message) if mask else message)
    return validation.validated_parameters, None
