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
