# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The revision graph of a service: alembic's own ``RevisionMap`` over the revision files read statically.

:class:`RevisionGraph` builds ``alembic.script.revision.RevisionMap`` from ``Revision`` objects made from
the files (files.py, binding.py), then answers with the calls alembic's commands make, so heads, history,
branch labels, ancestors, upgrade and downgrade steps agree with ``alembic heads`` / ``history`` /
``upgrade`` / ``downgrade``: ``heads`` (``RevisionMap.heads``), ``resolve`` (``get_revisions``),
``applied_set`` (``_get_ancestor_nodes``), ``upgrade_steps`` / ``downgrade_steps``
(``ScriptDirectory._upgrade_revs`` / ``_downgrade_revs`` over ``iterate_revisions``), ``all_current``
(``_get_all_current``) and ``rows_after`` (``HeadMaintainer`` of alembic.runtime.migration).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
import warnings

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import (
    list_revision_files, module_names, parse_module, parses_as_text, read_file, read_revision, revision_from_values)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.values import (
    FileError, Unread, to_tuple)
from ansible_collections.homelab.migrations.plugins.module_utils.preflight.alembic_calls import alembic_upgrade_calls

# alembic.script.revision._relative_destination: -1, +2, label@-1, rev+1
RELATIVE_RE = re.compile(r'(?:(.+?)@)?(\w+)?((?:\+|-)\d+)')


def is_relative(target):
    """A relative target (-1, +2, label@-1, rev+1) as alembic reads it."""
    match = RELATIVE_RE.match(target)
    return bool(match) and match.end() == len(target)


def _resolve_unread(path, values, dirs, modules):
    """binding.resolve_unread, imported only for a file that has a value to resolve (most files have none)."""
    if not any(isinstance(value, Unread) for value in values.values()):
        return []
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.binding import resolve_unread
    return resolve_unread(path, values, dirs, modules)


@contextlib.contextmanager
def _quiet():
    """alembic's warnings (a revision that depends on itself...) silenced: the findings say what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


class RevisionGraph(object):
    """alembic's RevisionMap over the parsed files, plus the file of each revision.

    Attributes: ``config`` (AlembicConfig); ``files`` {revision id: absolute path}; ``revisions`` (alembic
    ``Revision`` objects, file order); ``problems`` (messages; with any, ``map`` is None and ``ok`` False);
    ``checked`` {path: module_names()} of files parsed whole; ``unread`` (dicts path, line, name, text,
    assumed, revision: values status could not read); ``map`` (the RevisionMap); ``calls`` {(path, function):
    the pre-flight's calls of that function} taken from syntax_problems' parse (:meth:`function_calls`).
    Raises AdapterError when alembic cannot be imported.
    """

    def __init__(self, config):
        lazy.require_alembic()
        self.config = config
        self.files = {}
        self.revisions = []
        self.problems = []
        self.checked = {}  # files whose whole text went through ast already: {path: module_names()}
        self.calls = {}  # {(path, 'upgrade' or 'downgrade'): alembic_upgrade_calls()} from syntax_problems' parse
        self.unread = []  # values status could not read: {path, line, name, text, assumed, revision}
        self.map = None
        labels = self._load_revisions()
        if not self.problems:  # a file that could not be read may well define the revisions the others name
            self._check_references(labels)
        if not self.problems:
            self.map = self._build_map()

    def _load_revisions(self):
        """Read every revision file (ScriptDirectory._load_revisions); returns the branch labels they set."""
        paths, unreadable = list_revision_files(self.config)
        for path in unreadable:
            self.problems.append('%s: sourceless revision (no .py beside it); status cannot read it without running '
                                 'it, ship the .py file' % path)
        labels = set()
        modules = {}  # parsed application modules, for resolve_unread
        for path in paths:
            try:
                values, names = read_revision(path)
                unread = _resolve_unread(path, values, self.config.import_dirs, modules)
                rev = revision_from_values(path, values)
            except FileError as exc:
                self.problems.append('%s %s' % (path, exc))
                continue
            if rev.revision in self.files:
                self.problems.append('revision id %r is defined twice: %s and %s; give one of them a new id'
                                     % (rev.revision, self.files[rev.revision], path))
                continue
            self.files[rev.revision] = path
            if names is not False:
                self.checked[path] = names
            labels.update(rev._orig_branch_labels)
            self.revisions.append(rev)
            for name, line, text, assumed in unread:
                self.unread.append({'path': path, 'line': line, 'name': name, 'text': text, 'assumed': assumed,
                                    'revision': rev.revision})
        return labels

    def _check_references(self, labels):
        """Every down_revision names a revision file, every depends_on a revision or a branch label."""
        known = set(self.files)
        for rev in self.revisions:
            for down in to_tuple(rev.down_revision, default=()):
                if down not in known:
                    self.problems.append('%s: down_revision %r is not in any revision file under %s'
                                         % (self.files[rev.revision], down, ', '.join(self.config.version_locations)))
            deps = to_tuple(rev.dependencies, default=())
            for dep in deps:
                if dep in known or dep in labels:
                    continue
                if self.unread_labels():  # most likely one of the labels status could not read: go on without it
                    self.unread.append({'path': self.files[rev.revision], 'line': None, 'name': 'depends_on',
                                        'text': repr(dep), 'revision': rev.revision,
                                        'assumed': 'no dependency on %r, which names no revision and no branch '
                                                   'label status could read' % dep})
                    rev.dependencies = tuple(d for d in to_tuple(rev.dependencies, default=()) if d != dep) or None
                else:
                    self.problems.append('%s: depends_on %r is neither a revision nor a branch label'
                                         % (self.files[rev.revision], dep))

    def _build_map(self):
        """alembic's RevisionMap of the revisions, or None (and a problem) when alembic refuses the graph."""
        revisions = list(self.revisions)
        rmap = lazy.RevisionMap(lambda: revisions)
        try:
            with _quiet():
                self.heads_tuple = rmap.heads  # builds the map: cycles, duplicate labels... raise here
        except lazy.RevisionError as exc:
            involved = getattr(exc, 'revisions', None) or [r for r in self.files if re.search(
                r'(?<![\w-])%s(?![\w-])' % re.escape(r), str(exc))]
            self.problems.append('%s (files: %s)' % (exc, ', '.join(self.files[r] for r in involved if r in self.files)
                                                     or 'see the revision ids named'))
            return None
        except Exception as exc:  # alembic internals (KeyError...) on odd graphs
            self.problems.append('alembic cannot build the revision map: %s: %s' % (type(exc).__name__, exc))
            return None
        return rmap

    @property
    def ok(self):
        """Whether the revision map could be built (no problems)."""
        return self.map is not None

    def unread_labels(self):
        """The entries of ``unread`` that are branch labels."""
        return [u for u in self.unread if u['name'] == 'branch_labels']

    def warnings(self):
        """One message per value status could not read (a warning: heads, pending and plans do not need it)."""
        out = []
        for item in self.unread:
            where = '%s line %s' % (item['path'], item['line']) if item['line'] else item['path']
            if item['name'] == 'branch_labels':
                why = ('alembic sees the label when it imports the file, status never runs it; heads, pending and '
                       'plans do not need it, but a target naming that label is refused. Write the label as a '
                       "string literal (branch_labels = ('expand',)) or define the constant as a literal in a "
                       'module under %s to use it as a target' % ', '.join(self.config.import_dirs))
            elif item['name'] == 'down_revision':
                why = ('status cannot read it without running the file and took %s; write down_revision as a literal '
                       'so the order cannot differ from what alembic sees' % item['assumed'])
            else:
                why = ('status cannot read it without running the file and assumed %s; write depends_on as a literal '
                       'so the order cannot differ from what alembic sees' % item['assumed'])
            out.append('%s: revision %s sets %s to %s; %s' % (where, item['revision'], item['name'], item['text'], why))
        return out

    def unreadable_target(self, target):
        """Why ``target`` cannot be planned because it may name a branch label status could not read, or None."""
        unread = self.unread_labels()
        if not unread or self.map is None:
            return None
        for part in str(target).split('@'):
            part = re.sub(r'[+-]\d+$', '', part.strip())
            if part in ('', 'head', 'heads', 'base'):
                continue
            try:
                with _quiet():
                    if self.map.get_revisions(part):
                        continue
            except Exception:
                pass
            return ('target %r names %r, which is no revision and no branch label status could read; the revision '
                    'files set branch labels that cannot be read without running them: %s. Write those labels as '
                    'string literals, or give a revision id as the target'
                    % (target, part, '; '.join('%s line %s (%s)' % (u['path'], u['line'], u['text']) for u in unread)))
        return None

    def syntax_problems(self, rev_ids, function=None):
        """Problems in the files of ``rev_ids`` (the ones about to run), as messages naming the file.

        The read side parses only the revision names of most files; the files alembic is about to
        run get a full parse so a broken one is reported before anything starts. With ``function``
        ('upgrade' or 'downgrade') each file must also define it at module level: alembic looks it
        up for every step before it runs the first one, and fails on a file without it.
        """
        out = []
        for rev_id in rev_ids:
            path = self.files.get(rev_id)
            if path is None:
                continue
            if path not in self.checked:
                try:
                    data = read_file(path)
                    tree = parse_module(data)
                except FileError as exc:
                    out.append('%s %s' % (path, exc))
                    continue
                self.checked[path] = module_names(tree)
                self._keep_calls(path, function, data, tree)
            names = self.checked[path]
            if function and names is not None and function not in names:
                out.append('%s has no module-level %s(), so `alembic %s` would fail on revision %s before running '
                           'anything; define `def %s():` in it (with `pass` as its body if there is nothing to do)'
                           % (path, function, function, rev_id, function))
        return out

    def _keep_calls(self, path, function, data, tree):
        """The pre-flight's calls of ``function`` in a file syntax_problems parsed, kept so it need not parse it
        again: only when that tree is the one of the text the pre-flight reads (files.parses_as_text)."""
        if function and parses_as_text(data):
            try:
                self.calls[(path, function)] = alembic_upgrade_calls(data, function, tree)
            except Exception:
                pass  # function_calls parses it again and meets the same error

    def function_calls(self, path, function):
        """preflight.alembic_calls.alembic_upgrade_calls of the file at ``path`` for ``function`` ('upgrade' or
        'downgrade'): from syntax_problems' parse of it (handed over once), else read and parsed now. FileError
        when it cannot be read, SyntaxError / ValueError when it is no Python."""
        kept = self.calls.pop((path, function), None)
        if kept is not None:
            return kept
        return alembic_upgrade_calls(read_file(path), function)

    def heads(self):
        """Head revision ids (RevisionMap.heads, as `alembic heads`)."""
        return list(self.map.heads)

    def redundant_parents(self, rev_id):
        """(listed parents that are ancestors of another listed parent, the other parents) of a merge."""
        rmap = self.map._revision_map
        rev = rmap.get(rev_id)
        downs = list(to_tuple(getattr(rev, 'down_revision', None), default=()))
        if len(downs) < 2:
            return [], downs

        def ancestors(start):
            seen = set()
            todo = [start]
            while todo:
                node = rmap.get(todo.pop())
                for down in to_tuple(getattr(node, 'down_revision', None), default=()):
                    if down not in seen:
                        seen.add(down)
                        todo.append(down)
            return seen
        of = dict((d, ancestors(d)) for d in downs)
        redundant = [a for a in downs if any(a in of[b] for b in downs if b != a)]
        return redundant, [d for d in downs if d not in redundant]

    def history(self):
        """Oldest first: the reverse of what `alembic history` prints."""
        with _quiet():
            revs = list(self.map.iterate_revisions('heads', 'base', inclusive=True, assert_relative_length=False))
        return [r.revision for r in reversed(revs)]

    def applied_set(self, rows):
        """Revision ids applied when the version table holds ``rows``: their ancestors and dependencies too."""
        with _quiet():
            revs = self.map.get_revisions(tuple(rows))
            return set(r.revision for r in self.map._get_ancestor_nodes(revs, include_dependencies=True))

    def upgrade_steps(self, destination, rows):
        """ScriptDirectory._upgrade_revs: revisions `alembic upgrade <destination>` runs, in order."""
        with _quiet():
            revs = list(self.map.iterate_revisions(destination, tuple(rows), implicit_base=True))
        return [r.revision for r in reversed(revs)]

    def downgrade_steps(self, destination, rows):
        """ScriptDirectory._downgrade_revs: revisions `alembic downgrade <destination>` reverts, in order."""
        with _quiet():
            revs = list(self.map.iterate_revisions(tuple(rows), destination, select_for_downgrade=True))
        return [r.revision for r in revs]

    def resolve(self, target):
        """Revision ids ``target`` names (RevisionMap.get_revisions); RevisionError / MultipleHeads."""
        with _quiet():
            return [r.revision for r in self.map.get_revisions(target) if r is not None]

    def all_current(self, rows):
        """What `alembic current` prints for these version table rows (dependencies shown as heads too)."""
        with _quiet():
            return set(r.revision for r in self.map._get_all_current(tuple(rows)) if r is not None)

    def rows_after(self, rows, steps, is_upgrade):
        """The version table rows after alembic runs ``steps`` from ``rows``: alembic's own HeadMaintainer
        logic (merges, unmerges, dependencies) replayed on a set instead of the table."""
        rmap = self.map

        class Heads(lazy.HeadMaintainer):
            def __init__(self, heads):  # no migration context: only the set is kept
                self.heads = set(heads)

            def _insert_version(self, version):
                if version in self.heads:
                    raise ValueError('revision %s is already in the version table' % version)
                self.heads.add(version)

            def _delete_version(self, version):
                self.heads.remove(version)

            def _update_version(self, from_, to_):
                if to_ in self.heads:
                    raise ValueError('revision %s is already in the version table' % to_)
                self.heads.remove(from_)
                self.heads.add(to_)

        heads = Heads(rows)
        with _quiet():
            for rev_id in steps:
                heads.update_to_step(lazy.RevisionStep(rmap, rmap._revision_map[rev_id], is_upgrade))
        return heads.heads
