"""plugin_utils/selection.py, the migrate_all role's controller-side choices without a play: ordering by
depends_on, selection by tags, and the TTY test (also seen from a worker)."""

import os
import pty
import subprocess
import sys

import pytest

from ansible.errors import AnsibleFilterError

from harness.role_logic import role_logic as f
from harness.ansible import as_a_person
from harness.role_logic import HOMELAB, svc


def test_order_follows_depends_on_and_list_order_breaks_ties():
    assert f.migrate_all_order(HOMELAB) == ['dashboard', 'stream-bot', 'discord-bot']
    assert f.migrate_all_order([svc('b'), svc('a'), svc('c', 'a')]) == ['b', 'a', 'c']


def test_order_refuses_cycles_unknown_names_and_bad_specs_with_a_clear_message():
    with pytest.raises(AnsibleFilterError, match=r'cycle: a -> b -> a'):
        f.migrate_all_order([svc('a', 'b'), svc('b', 'a')])
    with pytest.raises(AnsibleFilterError, match=r"'a' depends on 'grafana', which is not in the service list"):
        f.migrate_all_order([svc('a', 'grafana')])
    with pytest.raises(AnsibleFilterError, match=r'used twice'):
        f.migrate_all_order([svc('a'), svc('a')])
    with pytest.raises(AnsibleFilterError, match=r'unknown key\(s\) colour'):
        f.migrate_all_order([svc('a', colour='red')])
    with pytest.raises(AnsibleFilterError, match=r'non-empty list'):
        f.migrate_all_order([])
    with pytest.raises(AnsibleFilterError) as err:
        f.migrate_all_order([svc('a', database_url='mysql://u:s3cret@db/x')])
    assert 's3cret' not in str(err.value)


def test_selection_by_tags():
    order = ['dashboard', 'stream-bot', 'discord-bot']
    assert f.migrate_all_selected(order, ['all'], []) == order
    assert f.migrate_all_selected(order, ['stream-bot'], []) == ['stream-bot']
    assert f.migrate_all_selected(order, ['discord-bot', 'dashboard'], []) == ['dashboard', 'discord-bot']
    assert f.migrate_all_selected(order, ['all'], ['dashboard']) == ['stream-bot', 'discord-bot']
    assert f.migrate_all_selected(order, ['stream_bot'], []) == []


_TTY_PROBE = r'''
import os, sys
sys.path[:0] = %r
from ansible_collections.homelab.migrations.plugins.plugin_utils.selection import migrate_all_interactive
here = migrate_all_interactive(True)
off = migrate_all_interactive('false')
pid = os.fork()
if pid == 0:
    # an ansible worker: its own session, stdio on /dev/null; its parent holds the terminal
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    with open(%r, 'w') as fh:
        fh.write('%%s %%s %%s' %% (here, off, migrate_all_interactive(True)))
    os._exit(0)
os.waitpid(pid, 0)
'''


@pytest.mark.parametrize('stdin_tty,stdout_tty,expected', [
    (True, True, 'True False True'),
    (False, True, 'False False False'),
    (True, False, 'False False False'),
])
def test_interactive_means_stdin_and_stdout_are_terminals_also_seen_from_a_worker(tmp_path, stdin_tty, stdout_tty,
                                                                                  expected):
    out = str(tmp_path / 'probe.txt')
    code = _TTY_PROBE % (sys.path, out)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, '-c', code], stdin=slave if stdin_tty else subprocess.DEVNULL,
                              stdout=slave if stdout_tty else subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                              check=False, env=as_a_person(os.environ))
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    with open(out) as fh:
        assert fh.read() == expected
