"""apply.py without a server: the child's session option travels in the options, os.environ is never changed.
Against a real PostgreSQL: tests/integration/plugins/module_utils/test_apply.py."""

import os


def test_the_child_session_option_travels_in_the_options_and_os_environ_is_never_changed():
    """client_connection_check_interval reaches the alembic child through the adapter's options (its own env),
    not by changing this process's PGOPTIONS (issue 17: no option through os.environ)."""
    from ansible_collections.homelab.migrations.plugins.module_utils.apply_session import child_session_options

    class Conn(object):
        def __init__(self, version):
            self.server_version = version

    before = os.environ.get('PGOPTIONS')
    assert child_session_options(Conn(150004), {'lock_timeout': '5s'}) == {
        'lock_timeout': '5s', 'client_connection_check_interval': '1000'}
    assert child_session_options(Conn(130011), {'lock_timeout': '5s'}) == {'lock_timeout': '5s'}
    assert os.environ.get('PGOPTIONS') == before
