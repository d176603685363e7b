"""lock.py without a server: the key is stable and fits int4. On a real server:
tests/integration/plugins/module_utils/test_lock.py."""

from ansible_collections.homelab.migrations.plugins.module_utils import lock


def test_key_is_stable_and_fits_int4():
    assert lock.lock_key('stream-bot') == lock.lock_key('stream-bot')
    assert lock.lock_key('stream-bot') != lock.lock_key('discord-bot')
    for name in ('a', 'dashboard', 'x' * 63, 'zz-top_9'):
        classid, objid = lock.lock_key(name)
        assert -2 ** 31 <= classid < 2 ** 31 and -2 ** 31 <= objid < 2 ** 31
