# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight checks of pending alembic revisions, read from their text and never run.

What alembic itself would refuse or PostgreSQL would reject in a revision's transaction (findings of
module_utils/preflight/), which revisions may commit their own work (``autocommit_block()``, COMMIT in
their SQL, an autocommit env.py), and, only for a service with ``alembic_sql_preview: true``, squawk over
the offline SQL of `alembic upgrade --sql`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.command import sql_by_revision
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import read_file
from ansible_collections.homelab.migrations.plugins.module_utils.preflight import alembic_calls
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import ERROR, SQUAWK, finding
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import MIGRATION_LIMIT, read_regular

# autocommit_block(), or SQL text that ends a transaction, in a revision file
_SELF_COMMIT_RE = re.compile(r"autocommit_block|['\"]\s*(?:COMMIT|ROLLBACK|END|ABORT)"
                             r"(?:\s+(?:WORK|TRANSACTION|AND\s+(?:NO\s+)?CHAIN))?\s*;?\s*['\"]"
                             r"|;\s*(?:COMMIT|ROLLBACK)\b|\.commit\(\)", re.IGNORECASE)
# env.py that connects in autocommit mode: each statement commits by itself
_ENV_AUTOCOMMIT_RE = re.compile(r"autocommit", re.IGNORECASE)


def _alembic_advice(kind, migration, later):
    """How to fix a transaction finding (kind 'always', 'enum' or 'enum_later') in alembic terms."""
    if kind == 'always':
        return ("Run it inside `with op.get_context().autocommit_block():` in upgrade() of revision %s (alembic "
                'commits the transaction before the block and begins a new one after it), or put it in a revision '
                'of its own that does so' % migration)
    advice = ('Put the ALTER TYPE ... ADD VALUE inside `with op.get_context().autocommit_block():` in revision %s, so '
              'it commits before the statements that use the new label' % migration)
    if kind == 'enum_later':
        advice += (", or give each revision its own transaction (transaction_per_migration=True in env.py's "
                   'context.configure())')
    return advice


def env_may_autocommit(config):
    """Whether the service's env.py (under ``config.script_location``) may run statements outside alembic's
    transaction: an AUTOCOMMIT isolation level, a DBAPI ``autocommit`` switch, a commit of its own (True when
    it cannot be read; False without a config)."""
    location = getattr(config, 'script_location', None)
    if not location:
        return False
    try:
        text = read_file(os.path.join(location, 'env.py')).decode('utf-8', 'replace')
    except Exception:
        return True
    return bool(_ENV_AUTOCOMMIT_RE.search(text) or _SELF_COMMIT_RE.search(text))


def env_names_transaction_per_migration(config):
    """Whether the service's env.py mentions transaction_per_migration (None when it cannot be read)."""
    location = getattr(config, 'script_location', None)
    if not location:
        return None
    try:
        text = read_file(os.path.join(location, 'env.py'))
    except Exception:
        return None
    return b'transaction_per_migration' in text


def self_committing(steps, files):
    """The revisions of ``steps`` whose file ({revision: path}) uses ``autocommit_block()`` or sends transaction
    control (COMMIT, ROLLBACK...), or cannot be read again; revisions without a file are left out."""
    out = []
    for rev in steps:
        path = files.get(rev)
        if not path:
            continue
        try:
            # read again after the run: it may have become a FIFO or a link to /dev/zero meanwhile
            text = read_regular(path, MIGRATION_LIMIT).decode('utf-8', 'replace')
        except (IOError, OSError):
            out.append(rev)  # cannot tell: assume it may
            continue
        if _SELF_COMMIT_RE.search(text):
            out.append(rev)
    return out


def merge_findings(graph, steps):
    """Findings (merge_lists_ancestor, error) for merges among ``steps`` listing an ancestor of another parent:
    alembic fails at them while it updates the version table."""
    findings = []
    for rev in steps:
        redundant, real = graph.redundant_parents(rev)
        if redundant and len(real) > 1:
            findings.append(finding(
                rev, None, 'merge_lists_ancestor', ERROR,
                'merge revision %s lists %s in down_revision, but %s already an ancestor of %s, which it lists '
                'too; `alembic upgrade` fails at this merge (KeyError while it updates the version table). '
                'Remove %s from down_revision in %s, so it reads %r'
                % (rev, ', '.join(redundant), 'that is' if len(redundant) == 1 else 'those are',
                   ', '.join(real), ', '.join(redundant), graph.files.get(rev), tuple(real))))
    return findings


def transaction_findings(conn, graph, config, steps, direction):
    """Findings for statements of upgrade() (``direction`` 'up') or downgrade() PostgreSQL refuses in the
    transaction alembic runs them in: one for the whole command unless env.py may ask for one per revision."""
    try:
        version = conn.server_version if conn is not None else None
    except Exception:
        version = None
    # alembic runs every revision of one command in one transaction unless env.py asks for one per revision
    # (transaction_per_migration): only when env.py never names that option is one transaction certain
    one_transaction = env_names_transaction_per_migration(config) is False
    transactions = []
    for rev in steps:
        try:  # read from the parse of the plan's syntax check when it had the file
            calls = graph.function_calls(graph.files.get(rev), 'upgrade' if direction == 'up' else 'downgrade')
        except Exception:
            continue  # the plan reports a file it cannot read or parse
        txs = alembic_calls.alembic_transactions(rev, calls)
        if one_transaction and transactions and txs and calls and not calls[0][1]:
            transactions[-1].extend(txs[0])  # continues the transaction the previous revision left open
            txs = txs[1:]
        if one_transaction and calls and calls[-1][1]:
            txs.append([])  # an autocommit block at the end: the next revision starts a new transaction
        transactions.extend(txs if one_transaction else [tx for tx in txs if tx])
    transactions = [tx for tx in transactions if tx]
    if not transactions:
        return []  # no statement read from the files (op.create_table... are not read): nothing to check
    # imported here: revisions without literal SQL (the common case) never need the SQL rules
    from ansible_collections.homelab.migrations.plugins.module_utils.preflight import enums, transaction
    return transaction.transaction_findings(transactions, version, _alembic_advice, enums.enum_catalog(conn))


def lint_findings(cli, conn, rows, steps, options, target):
    """(findings, lint info) of squawk over `alembic upgrade <from>:<target> --sql` (runs the service's env.py:
    only for a service that opted in), each revision's part of the output linted as that revision."""
    from ansible_collections.homelab.migrations.plugins.module_utils.preflight import squawk  # only with a preview
    skipped = {'linter': SQUAWK, 'ran': False}
    if squawk.squawk_path() is None:
        return [], dict(skipped, reason='squawk is not installed on the managed host (pip install squawk-cli '
                                        'there to lint pending SQL for lock and rewrite risks)')
    if len(rows) > 1:
        return [], dict(skipped, reason='the database is at several heads, which `alembic upgrade --sql` '
                                        'cannot start from')
    out, why = cli.offline_sql('upgrade', rows[0] if rows else 'base', target)
    if out is None:
        return [], dict(skipped, reason='`alembic upgrade --sql` failed: %s' % why)
    wanted = [(rev, body) for rev, body in sql_by_revision(out) if rev in steps]
    return squawk.squawk_findings(wanted, conn, options=options)
