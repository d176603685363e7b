"""backup/store.py: publishing never overwrites, and a parent symlink of another user is refused."""

import os

import pytest

from harness.backup_files import nobody as _nobody

from ansible_collections.homelab.migrations.plugins.module_utils import audit, report
from ansible_collections.homelab.migrations.plugins.module_utils.backup import store
from ansible_collections.homelab.migrations.plugins.module_utils.backup.errors import BackupError


def test_publish_never_overwrites(tmp_path):
    dest = str(tmp_path)
    base = 'svc_20250101_120000'
    for name, text in (('svc_20250101_120000.dump', 'foreign'), ('svc_20250101_120000_1.dump.sha256', 'x')):
        with open(os.path.join(dest, name), 'w') as fh:
            fh.write(text)
    tmp = os.path.join(dest, '.partial')
    with open(tmp, 'w') as fh:
        fh.write('mine')
    final = store.publish(tmp, dest, base, 'dump', 'ab' * 32, store.load_libc())
    assert os.path.basename(final) == 'svc_20250101_120000_2.dump'
    assert open(os.path.join(dest, 'svc_20250101_120000.dump')).read() == 'foreign'
    assert open(final).read() == 'mine' and not os.path.exists(tmp)
    # the fallback path (no renameat2) refuses to replace, too
    with open(tmp, 'w') as fh:
        fh.write('again')
    with pytest.raises(FileExistsError):
        store.rename_noreplace(tmp, final, libc=None)
    assert open(final).read() == 'mine'


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to make a symlink owned by another user')
def test_a_parent_symlink_of_another_user_is_refused(tmp_path):
    """Red team (issue 13): /tmp-like sticky directory, another user's symlink as a PARENT of the backup
    directory / audit log / report (the final component was checked, the parents were followed): the check
    passed for the safe target, and the other user could point the symlink at his own files before the use
    (protected_symlinks is off on some hosts, this one included)."""
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    safe = tmp_path / 'mine'
    (safe / 'backups').mkdir(parents=True, mode=0o700)
    os.chmod(safe, 0o700)
    link = shared / 'homelab'
    link.symlink_to(safe)
    os.lchown(link, _nobody(), -1)
    with pytest.raises(BackupError, match='symlink owned by nobody'):
        store.check_dest(str(link / 'backups'))
    with pytest.raises(OSError, match='symlink owned by nobody'):
        audit.append_record(str(link / 'backups' / 'audit.log'), {'x': 1})
    with pytest.raises(OSError, match='symlink owned by nobody'):
        report.write_atomic(str(link / 'backups' / 'status.json'), b'{}')
    assert os.listdir(safe / 'backups') == []
    # the same symlink owned by the user running (or root) is fine: only its owner can repoint it
    os.lchown(link, 0, -1)
    store.check_dest(str(link / 'backups'))
