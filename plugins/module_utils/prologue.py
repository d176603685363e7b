# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The start every module that reads a service's database shares (homelab_migration_status, _apply).

In this order, each failing the module with a message that says what to do next and that nothing was done:
psycopg2 importable (ansible's ``missing_required_lib``), the service spec(s) valid (``spec.SpecError``), then
each named tool's own library importable (``adapters.registry.missing_library``: alembic for an Alembic service).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import missing_library
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR
from ansible_collections.homelab.migrations.plugins.module_utils.spec import SpecError


def start(module, validate, nothing_done):
    """Check psycopg2, then return ``validate()`` (the validated spec: a DbUrl, or a dict of them).

    ``validate`` is a callable raising ``SpecError``; ``nothing_done`` ends the message of a spec error
    (``'nothing was changed'``). Fails the module (does not return) on either failure.
    """
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib('psycopg2'), exception=str(PSYCOPG2_IMPORT_ERROR))
    try:
        return validate()
    except SpecError as exc:
        module.fail_json(msg='%s; %s' % (exc, nothing_done))
    return None  # not reached: fail_json exits


def require_tools(module, tools):
    """Fail the module when the library of one of ``tools`` (tool names) cannot be imported."""
    missing = missing_library(tools)
    if missing:
        module.fail_json(msg=missing_required_lib(missing[0]), exception=str(missing[1]))
