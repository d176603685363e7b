"""Run the collection's modules and playbooks through the real ansible CLIs."""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
VENV_BIN = os.path.dirname(sys.executable)


def ensure_collection_link():
    """.build/collections/ansible_collections/homelab/migrations -> the repository."""
    ns = os.path.join(COLLECTIONS, 'ansible_collections', 'homelab')
    link = os.path.join(ns, 'migrations')
    os.makedirs(ns, exist_ok=True)
    if not os.path.islink(link):
        if os.path.exists(link):
            raise RuntimeError('%s exists and is not a symlink' % link)
        try:
            os.symlink(os.path.relpath(REPO, ns), link)
        except FileExistsError:
            pass
    return COLLECTIONS


def ansible_env(extra=None):
    ensure_collection_link()
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_LOCALHOST_WARNING': '0',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': '0',
        'PATH': VENV_BIN + os.pathsep + env.get('PATH', ''),
    })
    env.update(extra or {})
    return env


def as_a_person(env):
    """``env`` without what says a machine runs the play (CI, AWX/ansible-runner markers).

    For tests that put ansible-playbook on a terminal to stand for a person at it: CI sets ``CI=true``
    for the whole suite, and the role rightly never asks a question in a CI job. The names come from
    ``module_utils/automation.py`` (one list).
    """
    from ansible_collections.homelab.migrations.plugins.module_utils import automation
    env = dict(env)
    for name in ('CI', 'JOB_ID') + tuple(automation.RUNNER_ENV):
        env.pop(name, None)
    if (env.get('ANSIBLE_STDOUT_CALLBACK') or '').strip() == automation.RUNNER_CALLBACK:
        env.pop('ANSIBLE_STDOUT_CALLBACK')
    return env


def run_module(module, args, check=False, diff=False, verbosity=0, env=None, timeout=600):
    """Run ``homelab.migrations.<module>`` on localhost with ``args``.

    Arguments travel in an extra-vars file (0600), never on a command line. Returns
    ``(result_dict, completed_process)``; result_dict has ``failed`` set when the module failed.
    """
    with tempfile.TemporaryDirectory(prefix='homelab-mod-') as tmp:
        varsfile = os.path.join(tmp, 'vars.json')
        fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, 'w') as fh:
            json.dump({'homelab_test_args': args}, fh)
        playbook = os.path.join(tmp, 'play.yml')
        outfile = os.path.join(tmp, 'result.json')
        name = module if '.' in module else 'homelab.migrations.' + module
        with open(playbook, 'w') as fh:
            fh.write(
                '- hosts: localhost\n'
                '  gather_facts: false\n'
                '  tasks:\n'
                '    - name: module under test\n'
                '      %s: "{{ homelab_test_args }}"\n'
                '      register: homelab_test_result\n'
                '      ignore_errors: true\n'
                '    - name: save result\n'
                '      ansible.builtin.copy:\n'
                '        content: "{{ homelab_test_result | to_json }}"\n'
                '        dest: %s\n'
                '      check_mode: false\n'
                '      diff: false\n' % (name, outfile))
        argv = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                '-e', '@' + varsfile, playbook]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, env=ansible_env(env),
                              stdin=subprocess.DEVNULL, cwd=tmp)
        if not os.path.exists(outfile):
            raise AssertionError('ansible-playbook did not produce a result (rc=%s)\nSTDOUT:\n%s\nSTDERR:\n%s'
                                 % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
        with open(outfile) as fh:
            return json.load(fh), proc


def run_playbook(playbook, inventory=None, extra_vars=None, check=False, diff=False, tags=None, skip_tags=None,
                 verbosity=0, env=None, timeout=900, stdin=subprocess.DEVNULL, cwd=None, extra_args=None):
    """Run a playbook; extra vars go through a 0600 file. Returns the CompletedProcess."""
    with tempfile.TemporaryDirectory(prefix='homelab-play-') as tmp:
        argv = [os.path.join(VENV_BIN, 'ansible-playbook'), playbook]
        if inventory:
            argv += ['-i', inventory]
        if extra_vars:
            varsfile = os.path.join(tmp, 'vars.json')
            fd = os.open(varsfile, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, 'w') as fh:
                json.dump(extra_vars, fh)
            argv += ['-e', '@' + varsfile]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        if tags:
            argv += ['--tags', tags]
        if skip_tags:
            argv += ['--skip-tags', skip_tags]
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        argv += list(extra_args or [])
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, env=ansible_env(env),
                              stdin=stdin, cwd=cwd or REPO)


def run_report(stdout):
    """The end of a migrate_all run's output: its summary (each service's error and recovery, said once) and the
    play's closing failure (which only names the failed services)."""
    marker = 'TASK [homelab.migrations.migrate_all : Summary]'
    return stdout[stdout.rindex(marker):] if marker in stdout else stdout[stdout.rindex('TASK ['):]
