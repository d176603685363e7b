# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of a pre-flight finding, how its statement is shown, and what ``allow_findings`` lets through.

A finding is ``{migration, statement, code, severity, message, source}``: ``severity`` is ``error`` when the
run as planned will certainly fail, ``warning`` for a lock or rewrite risk (squawk), ``info`` else; ``source`` is
``homelab.migrations`` for this collection's own CODES, ``squawk`` for squawk's rules (its rule name as code).
The apply refuses a run while :func:`blocking` finds an error finding that ``allow_findings`` does not name.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils import secrets

ERROR = 'error'
WARNING = 'warning'
INFO = 'info'
SEVERITIES = (ERROR, WARNING, INFO)
SOURCE = 'homelab.migrations'
SQUAWK = 'squawk'  # the linter (preflight/squawk.py), and the source of its findings

# the codes this collection raises itself (squawk's rule names come on top, source: squawk)
CODES = ('not_in_transaction', 'revision_id_too_long', 'merge_lists_ancestor', 'byte_order_mark', 'ends_transaction',
         'breakpoint_splits_statement')
ALLOW_ALL = 'all'
STATEMENT_LINES = 2
STATEMENT_CHARS = 200


def finding(migration, statement, code, severity, message, source=SOURCE):
    """One finding (the dict above); raises ValueError for a severity not in SEVERITIES."""
    if severity not in SEVERITIES:
        raise ValueError('unknown severity %r' % severity)
    return {'migration': migration, 'statement': statement, 'code': code, 'severity': severity,
            'message': message, 'source': source}


def statement_head(text, lines=STATEMENT_LINES, limit=STATEMENT_CHARS):
    """The first ``lines`` line(s) of a statement, at most ``limit`` characters (leading comments and blank
    lines dropped), with its password constants masked (secrets.mask_sql): a ``PASSWORD '...'`` constant and
    any constant that names a password (a conninfo with password=<libpq-quoted value>, in any SQL quoting) is
    masked whole, since its value's own quoting is libpq's, which no pattern over the SQL text spells reliably."""
    # imported here: a run without findings never needs the lexer, which is slow to import
    from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import lex
    tokens = lex(text)
    offset = tokens[0].start if tokens else 0
    body = text[offset:] if tokens else text.strip()
    secret = [(tok.start - offset, tok.start - offset + len(tok.text)) for index, tok in enumerate(tokens)
              if tok.kind == 'string' and ('password' in (tok.value + tok.text).lower()
                                           or (index and tokens[index - 1].value == 'PASSWORD'))]
    body = secrets.mask_sql(body, secret)
    head = '\n'.join([line.rstrip() for line in body.splitlines() if line.strip()][:lines])
    if len(head) > limit:
        head = head[:limit - 3] + '...'
    return head


def blocking(findings, allow=None):
    """The error findings the ``allow`` list (codes, or 'all') does not let through."""
    allow = set(allow or [])
    if ALLOW_ALL in allow:
        return []
    return [f for f in findings if f.get('severity') == ERROR and f.get('code') not in allow]


def describe_blocking(name, blocked):
    """The apply's refusal for service ``name`` and its ``blocked`` findings (the first five are named)."""
    parts = []
    for f in blocked[:5]:
        parts.append('%s in %s: %s' % (f['code'], f['migration'], f['message']))
    more = len(blocked) - 5
    return ('service %r: pre-flight found %d migration(s) that will certainly fail as planned: %s%s. Nothing was '
            'changed. Fix them as said, or set allow_findings (role: migrate_all_allow_findings) to %s to run anyway'
            % (name, len(blocked), ' | '.join(parts), ' (and %d more)' % more if more > 0 else '',
               sorted(set(f['code'] for f in blocked))))
