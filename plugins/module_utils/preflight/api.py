# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pre-flight checks in one namespace, for the adapters and the apply (``import api as preflight_mod``).

    findings = adapter.preflight(conn, state, steps, options)   # each adapter knows its tool
    blocking(findings, allow)                                   # the error findings ``allow`` does not cover

Each name lives in one module of this package, by concern: :mod:`.lexer` (PostgreSQL tokens and statements),
:mod:`.findings` (the finding's shape, how a statement is shown, allow_findings), :mod:`.transaction` and
:mod:`.enums` (what fails inside a transaction block), :mod:`.squawk` (lock and rewrite risks), and
:mod:`.alembic_calls` (what an alembic revision sends, read with ast). This module only names them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.preflight.alembic_calls import (
    ALEMBIC_VERSION_NUM_DEFAULT, alembic_transactions, alembic_upgrade_calls, revision_id_findings)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.enums import enum_catalog
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import (
    ERROR, INFO, WARNING, blocking, describe_blocking, finding, statement_head)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import (
    cut_inside, skip_block_comment, split_sql)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.squawk import (
    SQUAWK, SQUAWK_STYLE_RULES, squawk_findings, squawk_path)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.transaction import (
    no_transaction_kind, transaction_findings)

__all__ = ['ALEMBIC_VERSION_NUM_DEFAULT', 'ERROR', 'INFO', 'SQUAWK', 'SQUAWK_STYLE_RULES', 'WARNING',
           'alembic_transactions', 'alembic_upgrade_calls', 'blocking', 'cut_inside', 'describe_blocking',
           'enum_catalog', 'finding', 'no_transaction_kind', 'revision_id_findings', 'skip_block_comment',
           'split_sql', 'squawk_findings', 'squawk_path', 'statement_head', 'transaction_findings']
