# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""squawk (squawk-cli, https://squawkhq.com) over the pending SQL: lock and rewrite risks as warning findings.

    findings, lint = squawk_findings([(migration, sql text)], conn, options=options)

squawk runs once per plan with ``--reporter json`` (and ``--assume-in-transaction``, ``--pg-version``,
``--exclude``); its JSON report is a list of violations {file, line, rule_name, message, help, level}. A
violation becomes a ``warning`` (source ``squawk``, its rule name as code), with the size of the table it is
about from the catalogue; ``info`` for a table the pending SQL creates itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys
import tempfile

from ansible_collections.homelab.migrations.plugins.module_utils import connection, secrets
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.findings import (
    INFO, SQUAWK, WARNING, finding, statement_head)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import split_sql

SQUAWK_TIMEOUT = 60
# squawk rules about style and type choices, not about what a pending migration locks, rewrites or fails on:
# left out (a pre-flight finding is about this run)
SQUAWK_STYLE_RULES = ('prefer-bigint-over-int', 'prefer-bigint-over-smallint', 'prefer-identity', 'prefer-text-field',
                      'prefer-timestamp-tz', 'prefer-robust-stmts', 'require-enum-value-ordering', 'ban-char-field')
# what the run can set itself (apply options lock_timeout / statement_timeout; role migrate_all_*_timeout)
SQUAWK_TIMEOUT_ADVICE = {
    'require-lock-timeout': 'set lock_timeout for the run (role variable migrate_all_lock_timeout)',
    'require-statement-timeout': 'set statement_timeout for the run (role variable migrate_all_statement_timeout)',
}


def squawk_path():
    """The squawk executable on this host (PATH, or beside the Python running the module), or None."""
    found = shutil.which(SQUAWK)
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), SQUAWK)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return None


def run_squawk(migrations, exe=None, timeout=SQUAWK_TIMEOUT, pg_version=None, in_transaction=True, exclude=()):
    """squawk's violations of ``migrations`` [(name, sql text)] in one squawk run: {name: [{rule, message, help,
    line}]} (``line`` 0-based in that text); raises RuntimeError with a reason when squawk cannot be run or its
    output cannot be read."""
    exe = exe or squawk_path()
    if exe is None:
        raise RuntimeError('squawk is not installed on the managed host (pip install squawk-cli)')
    tmp = tempfile.mkdtemp(prefix='homelab-preflight-')
    names = {}
    try:
        paths = []
        for index, (name, sql) in enumerate(migrations):
            path = os.path.join(tmp, '%04d.sql' % index)
            with open(path, 'w', encoding='utf-8') as fh:
                fh.write(sql)
            names[path] = name
            names[os.path.basename(path)] = name
            paths.append(path)
        argv = [exe, '--reporter', 'json']
        if in_transaction:
            argv.append('--assume-in-transaction')
        if exclude:
            argv.append('--exclude=%s' % ','.join(exclude))
        if pg_version:
            argv.append('--pg-version=%d.%d' % (pg_version // 10000, pg_version % 10000 // 100))
        try:
            proc = subprocess.run(argv + paths, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                                  check=False, cwd=tmp, env=dict(os.environ, SQUAWK_DISABLE_UPLOAD='1'))
        except subprocess.TimeoutExpired:
            raise RuntimeError('squawk did not finish within %ds' % timeout)
        except OSError as exc:
            raise RuntimeError('squawk could not be started: %s' % exc)
        text = proc.stdout.decode('utf-8', 'replace').strip()
        try:
            data = json.loads(text or '[]')
        except ValueError:
            data = None
        if not isinstance(data, list):
            said = secrets.mask(proc.stderr.decode('utf-8', 'replace'))  # mask first, then cut
            raise RuntimeError('squawk answered with exit code %d and no JSON report: %s'
                               % (proc.returncode, ' '.join(said.split())[:300]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = dict((name, []) for name, dummy in migrations)
    for item in data:
        if not isinstance(item, dict) or not item.get('rule_name'):
            continue
        name = names.get(str(item.get('file'))) or names.get(os.path.basename(str(item.get('file'))))
        if name is None:
            continue
        out[name].append({'rule': str(item['rule_name']), 'message': str(item.get('message') or ''),
                          'help': str(item.get('help') or ''), 'line': item.get('line'),
                          'level': item.get('level')})
    return out


# rules whose finding is about the table named in the statement (rewrite or lock while it runs)
_TABLE_WORDS = ('TABLE', 'ON')


def table_of(stmt):
    """The table a DDL statement is about (ALTER TABLE x / CREATE INDEX ... ON x), or None."""
    t = stmt.tokens
    for i, tok in enumerate(t):
        if tok.kind == 'word' and tok.value in _TABLE_WORDS and i > 0:
            j = i + 1
            for skip in (('IF', 'EXISTS'), ('ONLY',)):
                if [x.value for x in t[j:j + len(skip)]] == list(skip):
                    j += len(skip)
            if j < len(t) and t[j].kind in ('word', 'ident'):
                parts = []
                while j < len(t) and t[j].kind in ('word', 'ident'):
                    parts.append(t[j].text)
                    j += 1
                    if j < len(t) and t[j].text == '.':
                        j += 1
                        continue
                    break
                return '.'.join(parts)
    return None


def table_sizes(conn, names):
    """{name as written: (pg_total_relation_size bytes, estimated rows)} for tables that exist."""
    out = {}
    if not names or conn is None:
        return out
    try:
        with conn.cursor() as cur:
            for name in sorted(names):
                cur.execute('SELECT pg_catalog.pg_total_relation_size(c.oid), c.reltuples::bigint '
                            'FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass(%s)', (name,))
                row = cur.fetchone()
                if row is not None:
                    out[name] = (int(row[0]), int(row[1]))
    except Exception:
        connection.rollback_quietly(conn)
    return out


def human_size(n):
    """``n`` bytes as people read it: '512 bytes', '1.5 kB', '2.0 MB'."""
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if n < 1024 or unit == 'TB':
            return ('%d %s' % (n, unit)) if unit == 'bytes' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return str(n)


def squawk_findings(migrations, conn=None, exe=None, in_transaction=True, options=None):
    """Lint ``migrations`` [(name, sql text)] with squawk: (findings, lint) where lint says whether it ran.

    Each violation becomes a warning finding (source squawk, the rule name as code); where the statement
    names a table, the message says its size from the catalogue (or that it does not exist yet). Style rules
    (SQUAWK_STYLE_RULES) are left out, and the timeout rules when ``options`` set that timeout for the run.
    """
    exe = exe or squawk_path()
    if exe is None:
        return [], {'linter': SQUAWK, 'ran': False,
                    'reason': 'squawk is not installed on the managed host (pip install squawk-cli there to lint '
                              'pending SQL for lock and rewrite risks)'}
    if not migrations:
        return [], {'linter': SQUAWK, 'ran': False, 'reason': 'no pending SQL to lint'}
    try:
        version = conn.server_version if conn is not None else None
    except Exception:
        version = None
    try:
        exclude = list(SQUAWK_STYLE_RULES)
        for rule, name in (('require-lock-timeout', 'lock_timeout'),
                           ('require-statement-timeout', 'statement_timeout')):
            if (options or {}).get(name):
                exclude.append(rule)
        results = run_squawk(migrations, exe, pg_version=version, in_transaction=in_transaction, exclude=exclude)
    except RuntimeError as exc:
        return [], {'linter': SQUAWK, 'ran': False, 'reason': str(exc)}
    out = []
    about = []
    for name, sql in migrations:
        violations = results.get(name) or []
        statements = split_sql(sql) if violations else []
        for v in violations:
            stmt = _statement_at(sql, statements, v.get('line'))
            table = table_of(stmt) if stmt is not None else None
            message = (v['message'] + ((' ' + v['help']) if v['help'] else '')).strip()
            if v['rule'] in SQUAWK_TIMEOUT_ADVICE:
                message += ': %s' % SQUAWK_TIMEOUT_ADVICE[v['rule']]
            out.append(finding(name, statement_head(stmt.text) if stmt is not None else None, v['rule'], WARNING,
                               message, source=SQUAWK))
            about.append((out[-1], table))
    sizes = table_sizes(conn, set(t for dummy, t in about if t)) if conn is not None else None
    for item, table in about:
        if table and sizes is not None and table in sizes:
            size, rows = sizes[table]
            item['message'] += ' (table %s: %s, about %d rows)' % (table, human_size(size), max(rows, 0))
        elif table and sizes is not None:
            # made by the pending SQL itself: nobody else sees it, nothing to lock or rewrite yet
            item['message'] += ' (table %s: not in the database yet, so no risk in this run)' % table
            item['severity'] = INFO
    return _one_per_timeout_rule(out), {'linter': SQUAWK, 'ran': True, 'reason': None}


def _one_per_timeout_rule(findings):
    """The timeout rules fire on every statement: one finding per rule (the first on an existing table, else
    the first) says it, with the count of the others."""
    chosen = {}
    counts = {}
    for item in findings:
        code = item['code']
        if code not in SQUAWK_TIMEOUT_ADVICE:
            continue
        counts[code] = counts.get(code, 0) + 1
        if code not in chosen or (chosen[code]['severity'] != WARNING and item['severity'] == WARNING):
            chosen[code] = item
    for code, item in chosen.items():
        if counts[code] > 1:
            item['message'] += ' (and %d more statement(s) of the pending SQL)' % (counts[code] - 1)
    return [item for item in findings if item['code'] not in SQUAWK_TIMEOUT_ADVICE or chosen[item['code']] is item]


def _statement_at(sql, statements, line):
    """The statement squawk's 0-based ``line`` points into."""
    if not statements:
        return None
    if not isinstance(line, int):
        return statements[0]
    best = statements[0]
    for stmt in statements:
        if sql.count('\n', 0, stmt.start) <= line:
            best = stmt
    return best
