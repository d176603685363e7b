"""passfile.py: no passfile without a password; the passfile lives in a private directory and stale ones are swept.
No server needed (psql reading it: tests/integration/plugins/module_utils/test_connection.py)."""

import os
import stat
import subprocess

from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
from ansible_collections.homelab.migrations.plugins.module_utils.passfile import PassFile


def test_no_passfile_without_password():
    with PassFile(DbUrl('postgresql://u@h/db')) as pf:
        assert pf.path is None and 'PGPASSFILE' not in pf.env()


def test_passfile_lives_in_a_private_directory_and_stale_ones_are_swept(tmp_path):
    d = DbUrl('postgresql://u:S3cret:pw\\x@h/db')
    with PassFile(d, directory=str(tmp_path)) as pf:
        parent = os.path.dirname(pf.path)
        assert stat.S_IMODE(os.stat(parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(pf.path).st_mode) == 0o600
        assert open(pf.path).read() == '*:*:*:*:S3cret\\:pw\\\\x\n'
    assert not os.path.exists(parent)
    # what a SIGKILLed run leaves: a directory named after a dead process, and an old-style file
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = tmp_path / ('.homelab-pgpass-%d-abc' % dead.pid)
    stale.mkdir(mode=0o700)
    (stale / 'pgpass').write_text('*:*:*:*:S3cret\n')
    old = tmp_path / '.homelab-pgpass-xyz'
    old.write_text('h:5432:*:u:S3cret\n')
    mine = tmp_path / ('.homelab-pgpass-%d-live' % os.getpid())
    mine.mkdir(mode=0o700)
    with PassFile(d, directory=str(tmp_path)):
        assert not stale.exists() and not old.exists()
        assert mine.exists()  # a live process's directory is left alone
    mine.rmdir()


def test_sweep_never_empties_a_directory_swapped_in_after_its_check(tmp_path, monkeypatch):
    """A stale passfile directory replaced by a symlink to someone's directory between the sweep's lstat and its
    emptying (here: while the sweep asks whether its process lives): the sweep must not follow the link."""
    from ansible_collections.homelab.migrations.plugins.module_utils import child, passfile
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'precious').write_text('x')
    sweep = tmp_path / 'sweep'
    sweep.mkdir()
    stale = sweep / (passfile.PASSDIR_PREFIX + '999991-a')
    stale.mkdir()

    def pid_alive(pid):
        os.rmdir(str(stale))
        os.symlink(str(victim), str(stale))
        return False

    monkeypatch.setattr(child, 'pid_alive', pid_alive)
    passfile.sweep_passdirs(str(sweep))
    assert os.listdir(str(victim)) == ['precious']


def test_sweep_removes_a_stale_directory_and_its_files(tmp_path):
    from ansible_collections.homelab.migrations.plugins.module_utils import passfile
    stale = tmp_path / (passfile.PASSDIR_PREFIX + '999991-a')
    stale.mkdir()
    (stale / 'pgpass').write_text('h:5432:db:u:pw\n')
    assert passfile.sweep_passdirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists()
