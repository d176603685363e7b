# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-flight findings for drizzle migrations (status, check mode): what makes a planned run fail.

* ``byte_order_mark``: drizzle-orm sends a UTF-8 BOM as the first character of the first statement;
* ``breakpoint_splits_statement``: drizzle-orm splits on ``--> statement-breakpoint`` even inside a string,
  quoted name, dollar-quoted body or comment;
* the shared transaction findings of module_utils.preflight.transaction (statements PostgreSQL refuses inside the
  transaction drizzle-orm, and this collection, runs every migration in), and squawk's lint findings.

Findings are dicts ``{migration, statement, code, severity, message, source}`` (module_utils.preflight).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import codecs
import os

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.journal import (
    BREAKPOINT,
    decode_sql,
    split_statements,
)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.enums import enum_catalog
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import (
    ERROR,
    finding,
    statement_head,
)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import cut_inside, split_sql
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.squawk import SQUAWK, squawk_findings
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.transaction import transaction_findings
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import MIGRATION_LIMIT, read_regular


def _read(entry, direction):
    """(bytes, path) of the file a step runs (``<tag>.sql`` up, ``<tag>.down.sql`` down), or None when it is
    missing or unreadable (the plan reports that)."""
    path = entry.path if entry is not None and direction == 'up' else (entry.down_path if entry else None)
    try:
        if direction == 'up':
            if entry is None or not entry.exists:
                return None
            return entry.raw(), path
        if path is None or not os.path.isfile(path):
            return None
        return read_regular(path, MIGRATION_LIMIT), path
    except (IOError, OSError):
        return None


def file_findings(tag, raw, text, path, direction):
    """The byte_order_mark and breakpoint_splits_statement findings of one file (``raw`` bytes, ``text``
    decoded as drizzle-orm decodes it)."""
    findings = []
    if raw.startswith(codecs.BOM_UTF8):
        first = statement_head(text.lstrip('\ufeff'), lines=1)
        findings.append(finding(
            tag, first, 'byte_order_mark', ERROR,
            '%s starts with a UTF-8 byte order mark (bytes EF BB BF); drizzle-orm sends it as the first '
            'character of the first statement and PostgreSQL answers with a syntax error at position 1, so '
            'the run fails. Save the file as UTF-8 without a BOM%s'
            % (os.path.basename(path), ' (it is not applied yet, so its hash may change)'
               if direction == 'up' else '')))
    cuts = cut_inside(text, BREAKPOINT)
    if cuts:
        before = text[:cuts[0]]
        start = max(before.rfind(';'), 0)
        findings.append(finding(
            tag, statement_head(text[start + 1 if start else 0:cuts[0]], lines=1) or None,
            'breakpoint_splits_statement', ERROR,
            "%s has '%s' inside a string literal, quoted name, dollar-quoted body or /* */ comment (line "
            '%d); drizzle-orm splits the file on it all the same and sends the two halves as separate '
            'statements, so PostgreSQL fails (unterminated quoted string or comment). Reword the text so it '
            'does not contain that marker (for example split it: \'-->\' || \' statement-breakpoint\')'
            % (os.path.basename(path), BREAKPOINT, text.count('\n', 0, cuts[0]) + 1)))
    return findings


def advice(kind, migration, later):
    """What to do about a statement that cannot run in a drizzle transaction (module_utils.preflight's
    ``advice`` callback: ``kind`` always | enum_later | enum_same)."""
    if kind == 'always':
        return ('drizzle-orm, and this collection with transaction: all and each alike, runs every migration '
                'inside a transaction, so this statement can never run there: take it out of %s and run it by '
                'hand outside a transaction (psql in autocommit mode) before or after the migration, or use '
                'the form that works in a transaction (without CONCURRENTLY; it takes a stronger lock)'
                % migration)
    if kind == 'enum_later':
        return ('Run with transaction: each (role variable migrate_all_transaction: each), so that %s commits '
                'before %s uses the label' % (migration, later))
    return ('Move the statements that use the new label into a migration of their own (drizzle-kit generate '
            '--custom) and run with transaction: each (role variable migrate_all_transaction: each), so the '
            'ALTER TYPE commits first')


def preflight(conn, entries, steps, opts, lint, direction):
    """{findings, lint} for running ``steps`` (tags, run order) of ``entries`` (journal.Entry) in
    ``direction`` with the options ``opts`` (``transaction``: all | each); messages are not scrubbed yet."""
    by_tag = dict((e.tag, e) for e in entries)
    findings = []
    loaded = []
    for tag in steps:
        read = _read(by_tag.get(tag), direction)
        if read is None:
            continue
        raw, path = read
        text = decode_sql(raw)
        findings.extend(file_findings(tag, raw, text, path, direction))
        statements = []
        for chunk in split_statements(text):
            statements.extend(split_sql(chunk))
        loaded.append((tag, text, statements))
    if direction != 'up':
        lint = False
        opts = dict(opts, transaction='all')  # a revert runs in one transaction
    groups = [[item] for item in loaded] if opts['transaction'] == 'each' else [loaded]
    transactions = [[(tag, stmt) for tag, dummy, stmts in group for stmt in stmts] for group in groups]
    try:
        version = conn.server_version if conn is not None else None
    except Exception:
        version = None
    findings.extend(transaction_findings(transactions, version, advice, enum_catalog(conn)))
    lint_info = {'linter': SQUAWK, 'ran': False, 'reason': 'not asked for'}
    if lint:
        lint_findings, lint_info = squawk_findings([(tag, text) for tag, text, dummy in loaded], conn, options=opts)
        findings.extend(lint_findings)
    return {'findings': findings, 'lint': lint_info}
