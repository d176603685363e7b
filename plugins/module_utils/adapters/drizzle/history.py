# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A drizzle service's history: the tracking-table rows matched against the journal.

What drizzle-orm 0.29.5-0.45.x does (``migrate()`` in ``pg-core/dialect``): it reads ``lastDbMigration``,
the first row of ``SELECT id, hash, created_at ... ORDER BY created_at DESC LIMIT 1`` (PostgreSQL puts
NULLs first there, and ``Number(null)`` is 0), and runs every journal entry with
``Number(lastDbMigration.created_at) < migration.folderMillis`` (``folderMillis`` is the entry's ``when``).
It never compares hashes. That created_at is the *high-water mark* here.

How rows are matched to entries (the read side, this collection's rules):

1. a row matches an entry when ``row.created_at == entry.when`` and its hash is the entry's file hash;
2. a row whose hash is an unmatched entry's file hash IS that entry, whatever its created_at (a
   hand-written baseline row after ``drizzle-kit push``, a ``when`` edited later);
3. the remaining rows pair with unmatched entries of their ``created_at`` in journal / id order: such an
   entry whose file hash differs from its row's hash is ``modified``; a row that matches no entry is
   ``unknown_migration``;
4. ``applied`` lists matched entries in journal order, ``current`` is the last of them;
5. ``pending`` is exactly what drizzle-orm's next ``migrate()`` inserts, in journal order; an entry that is
   not applied but has ``when <= high-water mark`` is ``out_of_order`` (drizzle-orm would skip it silently;
   the message names the row that hides it), and so is an applied entry whose ``when`` is above the mark
   (drizzle-orm would run it again: the plan refuses that).

Rows are tuples ``(id, hash, created_at)`` (created_at an int of ms or None), entries are journal.Entry.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import problem
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.journal import utf8_error

MAX_LISTED = 10  # problems of one code listed one by one before they are summarised


def listed(code, messages, summary):
    """Problems ``[{code, message}]`` of one code: the first MAX_LISTED - 1 one by one, then ``summary``
    (a format with one ``%d``, the number left) when there are more than MAX_LISTED."""
    if len(messages) <= MAX_LISTED:
        return [problem(code, m) for m in messages]
    out = [problem(code, m) for m in messages[:MAX_LISTED - 1]]
    out.append(problem(code, summary % (len(messages) - MAX_LISTED + 1)))
    return out


def high_water_mark(rows):
    """``Number(lastDbMigration.created_at)`` as drizzle-orm reads it: None without rows, 0 when a row has
    no created_at (NULLS FIRST in ``ORDER BY created_at DESC``), else the largest created_at (int ms)."""
    if not rows:
        return None
    if any(r[2] is None for r in rows):
        return 0
    return max(r[2] for r in rows)


def match_rows(entries, rows):
    """({tag: row}, unmatched rows by id), by the three passes of the module docstring.

    Only the entries of a row's created_at get hashed in the first pass (the usual, cheap case); the
    other passes run only when rows are left over.
    """
    matches = {}
    taken = set()
    by_when = {}
    for entry in entries:
        by_when.setdefault(entry.when, []).append(entry)

    def pair_each(usable, candidates):
        """Pair each free row for which ``usable(row)`` with the first unmatched entry of ``candidates(row)``."""
        for row in rows:
            if row[0] in taken or not usable(row):
                continue
            hits = [e for e in candidates(row) if e.tag not in matches]
            if hits:
                matches[hits[0].tag] = row
                taken.add(row[0])

    # 1. created_at == when and the same hash
    pair_each(lambda row: row[1] is not None and row[2] is not None,
              lambda row: [e for e in by_when.get(row[2], []) if e.hash() == row[1]])
    if len(taken) < len(rows):
        by_hash = {}
        for entry in entries:
            if entry.tag not in matches and entry.hash() is not None:
                by_hash.setdefault(entry.hash(), []).append(entry)
        # 2. the same hash, whatever the created_at; 3. the same created_at, another hash (modified)
        pair_each(lambda row: row[1] is not None, lambda row: by_hash.get(row[1], []))
        pair_each(lambda row: row[2] is not None, lambda row: by_when.get(row[2], []))
    unmatched = sorted((r for r in rows if r[0] not in taken), key=lambda r: r[0])
    return matches, unmatched


class History(object):
    """The rows of one tracking table matched against one journal.

    ``entries`` [Entry] in journal order; ``rows`` [(id, hash, created_at)] by id; ``journal_path`` and
    ``qualified`` (the quoted tracking table name) only appear in messages. Attributes: ``matches``
    {tag: row}, ``unmatched`` [row], ``high_water`` (int ms or None), ``applied`` / ``pending`` / ``rerun``
    / ``skipped`` [Entry] in journal order (see the module docstring).
    """

    def __init__(self, entries, rows, journal_path, qualified):
        self.entries = entries
        self.rows = rows
        self.journal_path = journal_path
        self.qualified = qualified
        self.matches, self.unmatched = match_rows(entries, rows)
        self.high_water = high_water_mark(rows)
        self.applied = [e for e in entries if e.tag in self.matches]
        # drizzle-orm runs every entry newer than the high-water mark: an applied one among them would run again
        # (listed as pending, as drizzle would run it; reported, and the plan refuses to run it again)
        self.pending = [e for e in entries if self.high_water is None or self.high_water < e.when]
        self.rerun = [e for e in self.applied if self.high_water is not None and self.high_water < e.when]
        self.skipped = self.would_skip(e for e in entries if e.tag not in self.matches)

    # ------------------------------------------------------------------------------------ rules
    def is_applied(self, entry):
        """Whether a tracking row matched ``entry``."""
        return entry.tag in self.matches

    def row_of(self, entry):
        """The tracking row (id, hash, created_at) of an applied entry."""
        return self.matches[entry.tag]

    def null_rows(self):
        """Rows without created_at: drizzle-orm would run every migration again."""
        return [r for r in self.rows if r[2] is None]

    def would_skip(self, entries, high_water=None):
        """The entries drizzle-orm skips with high-water mark ``high_water`` (default: today's): ``when <=`` it."""
        mark = self.high_water if high_water is None else high_water
        return [e for e in entries if mark is not None and e.when <= mark]

    def modified(self):
        """Applied entries whose file hash differs from their row's hash, in journal order."""
        return [e for e in self.applied if e.exists and e.hash() is not None and e.hash() != self.matches[e.tag][1]]

    def skip_cause(self, entry):
        """(applied entry, its row) whose created_at, later than its own ``when``, hides the unapplied ``entry``
        from drizzle-orm (a hand-written baseline row), or None."""
        for applied in self.applied:
            row = self.matches[applied.tag]
            if row[2] is not None and row[2] != applied.when and row[2] >= entry.when and applied.when < entry.when:
                return applied, row
        return None

    def skip_hint(self, entry):
        """How to make drizzle-orm run the skipped ``entry`` too (text), or None."""
        cause = self.skip_cause(entry)
        if cause is None:
            return None
        applied, row = cause
        return ('tracking row id %d (the hash of %s) has created_at %d, later than its `when` %d: set it to %d '
                '(UPDATE %s SET created_at = %d WHERE id = %d) and drizzle-orm runs them too'
                % (row[0], applied.tag, row[2], applied.when, applied.when, self.qualified, applied.when, row[0]))

    # --------------------------------------------------------------------------------- problems
    def problems(self):
        """The status problems, in this order: out_of_order, modified, unknown_migration, missing_file,
        bad_config (unreadable or non-UTF-8 files)."""
        return (listed('out_of_order', self._skip_messages() + self._rerun_messages(),
                       '... and %d more migrations drizzle-orm would skip or run again (out of order)')
                + listed('modified', self._modified_messages(), '... and %d more modified migrations')
                + listed('unknown_migration', self._unknown_messages(), '... and %d more unknown tracking rows')
                + listed('missing_file', [
                    'journal entry %s has no file %s (drizzle-orm stops with "No file ... found"); restore it or '
                    'remove the entry from %s' % (e.tag, e.path, self.journal_path)
                    for e in self.entries if not e.exists],
                    '... and %d more journal entries without their .sql file')
                + listed('bad_config', self._unreadable_messages(), '... and %d more unreadable migration files'))

    def _skip_messages(self):
        messages = []
        for e in self.skipped:
            cause = self.skip_cause(e)
            if cause is None:
                messages.append(
                    '%s (when %d) is not applied but is not newer than the newest applied migration (created_at '
                    '%d): drizzle-orm would skip it silently. Apply it with allow_out_of_order=true, or give it a '
                    '`when` above %d in %s' % (e.tag, e.when, self.high_water, self.high_water, self.journal_path))
                continue
            m, row = cause
            messages.append(
                '%s (when %d) is not applied, and drizzle-orm skips it silently: tracking row id %d (the hash of '
                '%s) has created_at %d, later than %s\'s `when` %d (a hand-written baseline row?). Set that '
                'row\'s created_at to %s\'s `when` (UPDATE %s SET created_at = %d WHERE id = %d) so drizzle-orm '
                'and this collection apply %s, or apply it now with allow_out_of_order=true'
                % (e.tag, e.when, row[0], m.tag, row[2], e.tag, e.when, m.tag, self.qualified, m.when, row[0], e.tag))
        return messages

    def _rerun_messages(self):
        messages = []
        for e in self.rerun:
            row = self.matches[e.tag]
            messages.append(
                '%s is applied (tracking row id %d holds its hash) but its `when` %d in %s is newer than every '
                'created_at (newest %d): drizzle-orm would run it again. Put its `when` back to %d, or set the '
                'row\'s created_at to %d (UPDATE %s SET created_at = %d WHERE id = %d)'
                % (e.tag, row[0], e.when, self.journal_path, self.high_water, row[2], e.when, self.qualified, e.when,
                   row[0]))
        return messages

    def _modified_messages(self):
        return ['%s was changed after it was applied: the sha256 of %s is %s, the tracking row id %d holds %s. '
                'Restore the file from version control, or accept the change with allow_modified=true'
                % (e.tag, e.path, e.hash()[:12], self.matches[e.tag][0], (self.matches[e.tag][1] or '')[:12])
                for e in self.modified()]

    def _unknown_messages(self):
        if not self.unmatched:
            return []
        by_hash = {}
        for e in self.entries:
            if e.exists and e.hash() is not None:
                by_hash.setdefault(e.hash(), e)
        return [self._unknown_message(row, by_hash.get(row[1])) for row in self.unmatched]

    def _unknown_message(self, row, twin):
        """Why ``row`` matches no entry; ``twin`` is the first entry with the row's hash, or None."""
        rid, rhash, created = row
        if created is None:
            return ('tracking row id %d in %s has no created_at; drizzle-orm would run every migration again. Set '
                    'its created_at to the `when` of its journal entry' % (rid, self.qualified))
        if twin is not None and twin.tag in self.matches and self.matches[twin.tag][0] != rid:
            return ('tracking row id %d (created_at %d) repeats migration %s (row id %d): it was applied twice; '
                    'delete the extra row' % (rid, created, twin.tag, self.matches[twin.tag][0]))
        if twin is not None:
            return ('tracking row id %d (created_at %d) has the hash of %s, whose `when` is now %d in %s: the '
                    'journal was edited after it was applied. Put the `when` back to %d'
                    % (rid, created, twin.tag, twin.when, self.journal_path, created))
        return ('tracking row id %d (created_at %d, hash %s) in %s matches no entry of %s: a migration was '
                'removed from the journal after it was applied'
                % (rid, created, (rhash or '')[:12], self.qualified, self.journal_path))

    def _unreadable_messages(self):
        """Applied files whose hash cannot be read, then unapplied files that cannot be read or are not UTF-8."""
        messages = ['cannot read %s to check its hash; fix its permissions' % e.path
                    for e in self.applied if e.exists and e.hash() is None]
        for e in self.entries:
            if e.tag in self.matches or not e.exists:
                continue
            try:
                bad = utf8_error(e.raw())
            except (IOError, OSError) as exc:
                messages.append('cannot read %s: %s' % (e.path, exc.strerror or exc))
                continue
            if bad:
                messages.append('%s is not UTF-8 (%s): drizzle-orm would run it with the bad bytes replaced by '
                                'U+FFFD. Re-save the file as UTF-8' % (e.path, bad))
        return messages
