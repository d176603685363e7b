"""adapters/alembic/command.py: PostgreSQL settings for the child, whether the alembic command can be run (compared
with running it), and the child's environment (session settings from the options, os.environ left alone)."""

import os

import pytest

from harness.alembic_files import script as _script

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.command import (
    AlembicCommand, command_problem, pg_setting)
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import PlanError
from ansible_collections.homelab.migrations.plugins.module_utils.child import run_child


# ----------------------------------------------------------------------------------- settings
@pytest.mark.parametrize('value,expected', [(5, '5000ms'), (0.5, '500ms'), ('5s', '5s'), ('250 ms', '250ms'),
                                            ('0', '0'), (None, None), ('2min', '2min')])
def test_pg_settings(value, expected):
    assert pg_setting('lock_timeout', value) == expected


@pytest.mark.parametrize('value', ['5 seconds', '-1', '1s; DROP TABLE x', True, -3])
def test_pg_settings_refuse_garbage(value):
    with pytest.raises(PlanError):
        pg_setting('lock_timeout', value)


# ------------------------------------------------------------------ can the alembic command be run?


def test_command_problem_agrees_with_running_it(tmp_path):
    """command_problem(argv) is None exactly when run_child can start argv and it gets to run (exit 0)."""
    cwd = tmp_path / 'svc'
    (cwd / 'bin').mkdir(parents=True)
    ok = _script(cwd / 'bin' / 'ok', '#!/bin/sh')
    _script(cwd / 'bin' / 'gone-interpreter', '#!%s/old-venv/bin/python' % tmp_path)
    _script(cwd / 'bin' / 'env-missing', '#!/usr/bin/env homelab-no-such-python')
    _script(cwd / 'bin' / 'env-ok', '#!/usr/bin/env sh')
    noexec = cwd / 'bin' / 'noexec'
    noexec.write_text('#!/bin/sh\nexit 0\n')
    noexec.chmod(0o644)
    env = dict(os.environ, PATH='bin' + os.pathsep + '/usr/bin' + os.pathsep + '/bin')  # a relative entry: from cwd
    cases = {
        (ok,): None,
        ('bin/ok',): None,
        ('ok',): None,
        ('env-ok',): None,
        ('sh', '-c', 'exit 0'): None,
        ('/nonexistent/bin/alembic',): '/nonexistent/bin/alembic does not exist',
        ('bin/nothere',): '%s/bin/nothere does not exist' % cwd,
        ('homelab-no-such-alembic',): 'homelab-no-such-alembic is not on PATH (bin:/usr/bin:/bin)',
        (str(cwd / 'bin'),): '%s/bin is a directory' % cwd,
        (str(noexec),): '%s is not executable' % noexec,
        ('gone-interpreter',): '#! interpreter %s/old-venv/bin/python does not exist' % tmp_path,
        ('env-missing',): '`#!/usr/bin/env homelab-no-such-python`, and homelab-no-such-python is not on PATH',
    }
    for argv, expected in cases.items():
        why = command_problem(list(argv), str(cwd), env)
        try:
            rc = run_child(list(argv), str(cwd), env, timeout=30)[0]
        except OSError:
            rc = 'OSError'
        if expected is None:
            assert (why, rc) == (None, 0), argv
        else:
            assert why is not None and expected in why, (argv, why)
            assert rc != 0, argv
    # without PATH lookups (what status checks): only paths are judged
    assert command_problem(['homelab-no-such-alembic'], str(cwd), env, path_lookups=False) is None
    assert command_problem(['env-missing'], str(cwd), env, path_lookups=False) is None
    assert command_problem(['bin/env-missing'], str(cwd), env, path_lookups=False) is None
    assert 'does not exist' in command_problem(['bin/gone-interpreter'], str(cwd), env, path_lookups=False)


def test_child_env_takes_session_settings_from_the_options_and_leaves_os_environ_alone(monkeypatch):
    """client_connection_check_interval, lock_timeout and statement_timeout reach alembic's sessions in the
    child's own PGOPTIONS (after the caller's), never through this process's os.environ."""
    from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
    monkeypatch.setenv('PGOPTIONS', '-c search_path=app')
    monkeypatch.setenv('ALEMBIC_CONFIG', 'other.ini')
    before = dict(os.environ)
    cli = AlembicCommand({'path': '/srv/svc'}, 'svc', DbUrl('postgresql://u@h/db'), lambda text: text)
    env = cli.env({'client_connection_check_interval': '1000', 'lock_timeout': 5, 'statement_timeout': '1min'})
    assert env['PGOPTIONS'] == ('-c search_path=app -c client_connection_check_interval=1000 -c lock_timeout=5000ms '
                                '-c statement_timeout=1min')
    assert 'ALEMBIC_CONFIG' not in env and env['DATABASE_URL'].startswith('postgresql')
    assert cli.env()['PGOPTIONS'] == '-c search_path=app'
    assert dict(os.environ) == before
