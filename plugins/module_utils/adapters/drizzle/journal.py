# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A drizzle-kit migrations folder as drizzle-orm 0.29.5-0.45.x reads it (``readMigrationFiles`` in
``drizzle-orm/migrator``).

* the journal ``<migrations_dir>/meta/_journal.json``; only ``entries[].tag`` and ``entries[].when``
  (drizzle-orm's ``folderMillis``, milliseconds) matter, the migration is ``<tag>.sql`` beside ``meta/``;
* statements: the file text split on the literal ``--> statement-breakpoint``. drizzle-orm sends every
  chunk; chunks holding only whitespace, comments and semicolons are skipped here because psycopg2
  refuses an empty query (the server does nothing with them either);
* hash: sha256 hex of the file text as Node's ``Buffer.toString()`` gives it, i.e.
  ``raw.decode('utf-8', 'replace').encode('utf-8')``;
* down migrations (this collection's, drizzle-orm has none): ``<tag>.down.sql`` beside ``<tag>.sql``,
  same breakpoint rules.

Errors: :func:`load_journal` returns its problems as text; :func:`read_up` / :func:`read_down` raise
PlanError (codes ``missing_file``, ``bad_config``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import codecs
import hashlib
import json
import os

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.lexer import skip_block_comment
from ansible_collections.homelab.migrations.plugins.module_utils.regular_file import (
    JOURNAL_LIMIT,
    MIGRATION_LIMIT,
    read_regular,
)

BREAKPOINT = '--> statement-breakpoint'
JOURNAL_NAME = os.path.join('meta', '_journal.json')
DOWN_SUFFIX = '.down.sql'
# JavaScript numbers are exact up to 2**53 - 1: beyond that drizzle-orm compares rounded values
MAX_SAFE_WHEN = 2 ** 53 - 1

_PG_SPACE = frozenset(' \t\n\r\f')


# --------------------------------------------------------------------------------------------- files
def decode_sql(raw):
    """The file text (str) as drizzle-orm sees it: Node decodes invalid UTF-8 to U+FFFD."""
    return raw.decode('utf-8', 'replace')


def sql_hash(raw):
    """drizzle-orm's ``hash`` of a migration file (bytes): sha256 hex of the decoded text re-encoded as UTF-8."""
    return hashlib.sha256(decode_sql(raw).encode('utf-8')).hexdigest()


def utf8_error(raw):
    """None when ``raw`` (bytes) is valid UTF-8, else a short description of the first bad byte."""
    try:
        codecs.decode(raw, 'utf-8')
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b'\n') + 1
        return 'invalid UTF-8 byte 0x%02x at byte offset %d (line %d)' % (raw[exc.start], exc.start, line)
    return None


def is_blank_chunk(chunk):
    """True when a chunk holds only whitespace, ``--``/``/* */`` comments and semicolons.

    An unterminated ``/*`` comment is not blank: the server must see it and fail as it does for drizzle.
    Whitespace is what PostgreSQL's scanner skips (scanner_isspace: space, tab, newline, carriage return,
    form feed), not Python's ``str.isspace``: a chunk of a no-break space, an ideographic space or a
    control character fails on the server for drizzle-orm, so it is sent and fails here too.
    """
    i = 0
    n = len(chunk)
    while i < n:
        ch = chunk[i]
        if ch in _PG_SPACE or ch == ';':
            i += 1
        elif chunk.startswith('--', i):
            # the server's `--` comment ends at a newline or a carriage return (scan.l: non_newline [^\n\r])
            ends = [pos for pos in (chunk.find('\n', i), chunk.find('\r', i)) if pos >= 0]
            if not ends:
                return True
            i = min(ends) + 1
        elif chunk.startswith('/*', i):
            i, closed = skip_block_comment(chunk, i)
            if not closed:
                return False
        else:
            return False
    return True


def split_statements(text):
    """The chunks (list of str) drizzle-orm would send, minus the blank ones (see :func:`is_blank_chunk`)."""
    return [chunk for chunk in text.split(BREAKPOINT) if not is_blank_chunk(chunk)]


# ------------------------------------------------------------------------------------------ journal
class Entry(object):
    """One journal entry: ``index`` (position among the valid entries), ``tag``, ``when`` (drizzle-orm's
    ``folderMillis``, int ms), ``path`` of ``<tag>.sql`` and whether something ``exists`` under that name."""

    __slots__ = ('index', 'tag', 'when', 'path', 'exists', '_raw', '_hash')

    def __init__(self, index, tag, when, folder):
        self.index = index
        self.tag = tag
        self.when = when
        self.path = os.path.join(folder, tag + '.sql')
        # a FIFO / device / directory under the name exists too: reading it is refused (read_regular), not waited on
        self.exists = os.path.exists(self.path)
        self._raw = None
        self._hash = None

    @property
    def down_path(self):
        """The path of ``<tag>.down.sql``."""
        return self.path[:-len('.sql')] + DOWN_SUFFIX

    def raw(self):
        """The file's bytes (read once); raises IOError/OSError."""
        if self._raw is None:
            self._raw = read_regular(self.path, MIGRATION_LIMIT)
        return self._raw

    def hash(self):
        """The file's drizzle hash, or None when it cannot be read."""
        if self._hash is None and self.exists:
            try:
                self._hash = sql_hash(self.raw())
            except (IOError, OSError):
                return None
        return self._hash


def _read_journal_items(folder, journal):
    """(``entries`` list of the journal, None) or (None, error text)."""
    if not os.path.isdir(folder):
        return None, ('migrations directory %s does not exist; check path and migrations_dir of the service '
                      '(drizzle-kit writes it where drizzle.config.ts says `out`)' % folder)
    try:
        raw = read_regular(journal, JOURNAL_LIMIT)
    except (IOError, OSError) as exc:
        if not os.path.exists(journal):
            return None, 'drizzle journal %s not found; run `drizzle-kit generate` or fix migrations_dir' % journal
        return None, 'cannot read drizzle journal %s: %s' % (journal, exc.strerror or exc)
    if not raw.strip():
        return None, 'drizzle journal %s is empty; restore it from version control' % journal
    bad = utf8_error(raw)
    if bad:
        return None, 'drizzle journal %s is not UTF-8 (%s); restore it from version control' % (journal, bad)
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError as exc:
        return None, 'drizzle journal %s is not valid JSON (%s); restore it from version control' % (journal, exc)
    if not isinstance(data, dict):
        return None, 'drizzle journal %s must hold a JSON object with an "entries" list' % journal
    items = data.get('entries')
    if not isinstance(items, list):
        return None, ('drizzle journal %s: "entries" must be a list, got %s'
                      % (journal, 'nothing' if items is None else type(items).__name__))
    return items, None


def _entry_error(item, seen, index):
    """Why journal item ``index`` is unusable, or None (``seen``: {tag: index} of the earlier ones)."""
    if not isinstance(item, dict):
        return 'is not an object'
    tag = item.get('tag')
    when = item.get('when')
    if not isinstance(tag, str) or not tag:
        return 'has no string "tag"'
    if '/' in tag or '\\' in tag or '..' in tag or '\x00' in tag or os.path.isabs(tag):
        return 'tag %r points outside the migrations folder' % tag
    if tag in seen:
        return 'repeats tag %r of entries[%d]' % (tag, seen[tag])
    seen[tag] = index
    if isinstance(when, bool) or not isinstance(when, int):
        return '(%s) "when" must be an integer of milliseconds, got %r' % (tag, when)
    if when < 0 or when > MAX_SAFE_WHEN:
        return '(%s) "when" %d is outside 0..%d' % (tag, when, MAX_SAFE_WHEN)
    return None


def load_journal(folder):
    """Read ``<folder>/meta/_journal.json``.

    Returns (entries: [Entry] in journal order, errors: [str]); errors name the journal and what to fix.
    """
    journal = os.path.join(folder, JOURNAL_NAME)
    items, error = _read_journal_items(folder, journal)
    if error:
        return [], [error]
    errors = []
    entries = []
    seen = {}
    for index, item in enumerate(items):
        error = _entry_error(item, seen, index)
        if error:
            errors.append('%s: entries[%d] %s' % (journal, index, error))
        else:
            entries.append(Entry(len(entries), item['tag'], item['when'], folder))
    return entries, errors


# ------------------------------------------------------------------------------- migrations to run
def read_up(entry, journal_path):
    """The migration ``entry`` as a plan step: {tag, when, file, hash, statements}.

    Raises PlanError ``missing_file`` (no or unreadable file) or ``bad_config`` (not UTF-8).
    """
    if not entry.exists:
        raise PlanError('cannot apply %s: its file %s is missing; restore it or remove the entry from %s'
                        % (entry.tag, entry.path, journal_path), code='missing_file')
    try:
        raw = entry.raw()
    except (IOError, OSError) as exc:
        raise PlanError('cannot read %s: %s' % (entry.path, exc.strerror or exc), code='missing_file')
    bad = utf8_error(raw)
    if bad:
        raise PlanError('%s is not UTF-8 (%s); drizzle-orm would run it with those bytes replaced by U+FFFD. '
                        'Re-save the file as UTF-8, then run again' % (entry.path, bad), code='bad_config')
    return {'tag': entry.tag, 'when': entry.when, 'file': entry.path, 'hash': sql_hash(raw),
            'statements': split_statements(raw.decode('utf-8'))}


def read_down(entry, row_id):
    """The revert of ``entry`` (tracking row ``row_id``) as a plan step: {tag, when, file, row_id, statements},
    or None when there is no ``<tag>.down.sql``.

    Raises PlanError ``missing_file`` (unreadable) or ``bad_config`` (not UTF-8).
    """
    path = entry.down_path
    try:
        raw = read_regular(path, MIGRATION_LIMIT)
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return None
        raise PlanError('cannot read %s: %s' % (path, exc.strerror or exc), code='missing_file')
    bad = utf8_error(raw)
    if bad:
        raise PlanError('%s is not UTF-8 (%s); re-save it as UTF-8' % (path, bad), code='bad_config')
    return {'tag': entry.tag, 'when': entry.when, 'file': path, 'row_id': row_id,
            'statements': split_statements(raw.decode('utf-8'))}
