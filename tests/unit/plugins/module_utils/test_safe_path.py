"""safe_path.lstat_entries: the one listing of a directory's entries that backups and passfile sweeps use."""

import os
import re
import stat

import pytest

from ansible_collections.homelab.migrations.plugins.module_utils import safe_path


def test_lstat_entries_lists_only_accepted_names_and_does_not_follow_links(tmp_path):
    (tmp_path / 'keep-1').write_text('x')
    (tmp_path / 'other').write_text('x')
    os.mkdir(str(tmp_path / 'keep-dir'))
    os.symlink(str(tmp_path / 'keep-dir'), str(tmp_path / 'keep-link'))
    found = safe_path.lstat_entries(str(tmp_path), re.compile(r'keep-(\w+)$').match)
    by_name = dict((name, (path, st, match.group(1))) for name, path, st, match in found)
    assert sorted(by_name) == ['keep-1', 'keep-dir', 'keep-link']
    assert by_name['keep-link'][0] == str(tmp_path / 'keep-link')
    assert stat.S_ISLNK(by_name['keep-link'][1].st_mode)  # the link itself, not its target
    assert by_name['keep-dir'][2] == 'dir'


def test_lstat_entries_raises_when_the_directory_cannot_be_listed(tmp_path):
    with pytest.raises(OSError):
        safe_path.lstat_entries(str(tmp_path / 'missing'), bool)


def test_lstat_entries_stats_each_entry_only_when_the_caller_reaches_it(tmp_path):
    """What a caller acts on is as fresh as an lstat just before: an entry swapped for a symlink after the listing,
    while an earlier entry is handled, is seen as the symlink."""
    for name in ('keep-a', 'keep-b'):
        os.mkdir(str(tmp_path / name))
    seen = {}
    for name, _path, st, _taken in safe_path.lstat_entries(str(tmp_path), lambda n: n.startswith('keep-')):
        seen[name] = stat.S_ISLNK(st.st_mode)
        other = tmp_path / ('keep-b' if name == 'keep-a' else 'keep-a')
        if len(seen) == 1:
            os.rmdir(str(other))
            os.symlink(str(tmp_path), str(other))
    assert sorted(seen.values()) == [False, True], seen


def test_lstat_entries_leaves_out_a_vanished_entry_and_raises_other_errors(tmp_path):
    """The first name accepted takes the other entry away before it is reached: left out by default, raised when
    its error is not one to skip."""
    def taking_away_the_other(first):
        def accept(name):
            if not first:
                first.append(name)
                os.unlink(str(tmp_path / ('keep-b' if name == 'keep-a' else 'keep-a')))
            return True
        return accept

    for name in ('keep-a', 'keep-b'):
        (tmp_path / name).write_text('x')
    first = []
    found = [name for name, _p, _s, _t in safe_path.lstat_entries(str(tmp_path), taking_away_the_other(first))]
    assert found == first
    for name in ('keep-a', 'keep-b'):
        (tmp_path / name).write_text('x')
    with pytest.raises(FileNotFoundError):
        list(safe_path.lstat_entries(str(tmp_path), taking_away_the_other([]), skip=()))
