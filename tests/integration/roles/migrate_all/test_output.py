"""Output a person can read (issue 18 item 9): at default verbosity a --check and a real three-service apply of
the example homelab print a bounded number of lines, and a refusal prints its reason once. Through the real
ansible-playbook with the default callback (real PostgreSQL)."""

import os

import pytest

from integration.roles.migrate_all.test_role import homelab, refused  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.peer

DUMP = os.environ.get('MIGRATE_ALL_OUTPUT_DUMP')


def _lines(proc, name):
    if DUMP:
        with open(os.path.join(DUMP, name + '.txt'), 'w') as fh:
            fh.write(proc.output)
    return len(proc.output.splitlines())


def test_check_and_apply_of_three_services_print_few_lines(homelab):  # noqa: F811
    check = homelab.play(check=True)
    assert check.returncode == 0, check.output[-3000:]
    check_lines = _lines(check, 'check')
    run = homelab.play()
    assert run.returncode == 0, run.output[-3000:]
    run_lines = _lines(run, 'apply')
    assert [r['outcome'] for r in homelab.role_records()] == ['success'] * 3
    print('lines: --check %d, apply %d' % (check_lines, run_lines))
    # before issue 18 item 9 was worked on: 117 and 271 lines; with a task per step per service: 108 and 232
    assert check_lines <= 95 and run_lines <= 135, (check_lines, run_lines)
    # one line per service per step of the run task (backing up, moving), in dependency order
    task = run.output[run.output.index('Back up, migrate and record the selected services'):]
    task = task[:task.index('\nTASK [')]
    steps = [line.split(':')[0] + ': ' + line.split(': ')[1].split(' ')[0] for line in task.splitlines()[1:]
             if line.startswith(('dashboard:', 'stream-bot:', 'discord-bot:'))]
    assert steps == ['dashboard: backing', 'dashboard: moving', 'stream-bot: backing', 'stream-bot: moving',
                     'discord-bot: backing', 'discord-bot: moving'], task


def test_a_failed_run_says_each_error_once(homelab):  # noqa: F811
    """ansible-core 2.19 prints a failed task's message twice: the error is in the summary, once; the closing
    failure names the services only. Before: the failed apply task, the summary and the closing failure."""
    homelab.break_stream_bot()
    proc = homelab.play()
    assert proc.returncode != 0, proc.output[-3000:]
    _lines(proc, 'failed')
    assert proc.output.count('does not exist (SQLSTATE 42703)') == 1, proc.output[-6000:]
    assert 'Migration failed: stream-bot failed, discord-bot skipped; the summary above gives each error' in proc.output


def test_a_refusal_prints_its_reason_once(homelab):  # noqa: F811
    """The task that refused the run prints the reason; the play's last failure names that task, not the reason
    again (before: printed by two tasks)."""
    proc = homelab.play(tags='stream-bto')
    assert proc.returncode != 0, proc.output[-3000:]
    _lines(proc, 'refused')
    reason = '--tags stream-bto (did you mean stream-bot?)'
    tasks = [part for part in proc.output.split('TASK [') if reason in part]
    assert len(tasks) == 1 and tasks[0].startswith('homelab.migrations.migrate_all : Refuse'), tasks
    last = proc.output[proc.output.index('Fail with the reason the run was refused'):]
    assert 'refused by the task' in last and 'Refuse migrate_all_* variables' in last, last
    assert 'the audit record says why' in last
    refused(homelab, homelab.audit())
