"""The status_timer role: a systemd service + timer that runs the status playbook in check mode.

The machine running the tests may have no running systemd, so the role writes its units into a temporary
directory (status_timer_manage=false); `systemd-analyze verify` checks them (skipped with the reason when it
is not installed). The service's own ExecStart=, Environment= and WorkingDirectory= are then parsed the way
systemd reads them and run, against the example homelab on real PostgreSQL with its password only in a
vault-encrypted vars file: the dashboard is refreshed, the databases are not touched, and the password is in
no unit file, no output and no published file.
"""

import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from harness.ansible import COLLECTIONS, REPO, VENV_BIN, ansible_env, run_playbook
from integration.roles.migrate_all.test_role import DB_VARS, INVENTORY, Homelab

pytestmark = pytest.mark.peer

SYSTEMD_ANALYZE = shutil.which('systemd-analyze')
NAME = 'homelab-migrations-status'
# a dashboard path with characters systemd and JSON both treat specially
ODD_DIR = 'www 50%$ "q" \\x'  # ($NAME would be expanded: a module path option)


def _play(tmp_path, **role_vars):
    playbook = tmp_path / 'timer.yml'
    (tmp_path / 'units').mkdir(exist_ok=True)
    playbook.write_text('- hosts: localhost\n  gather_facts: false\n  roles:\n'
                        '    - role: homelab.migrations.status_timer\n')
    return run_playbook(str(playbook), inventory='localhost,', extra_vars=dict(
        {'ansible_connection': 'local', 'status_timer_manage': False, 'status_timer_user': 'postgres',
         'status_timer_unit_dir': str(tmp_path / 'units')}, **role_vars), timeout=300)


def _units(tmp_path):
    base = tmp_path / 'units' / NAME
    return str(base) + '.service', str(base) + '.timer'


def systemd_words(line):
    """A systemd command line or Environment= value split into words as systemd does (quotes, C escapes,
    %% and $$)."""
    words, word, quote, i, started = [], '', None, 0, False
    escapes = {'n': '\n', 't': '\t', '\\': '\\', '"': '"', "'": "'", ' ': ' '}
    while i < len(line):
        c = line[i]
        if c == '\\' and i + 1 < len(line):
            word += escapes.get(line[i + 1], line[i + 1])
            i += 2
            started = True
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in '"\'':
            quote, started = c, True
        elif c.isspace():
            if started:
                words.append(word)
            word, started = '', False
        else:
            word += c
            started = True
        i += 1
    if started:
        words.append(word)
    return [w.replace('%%', '%').replace('$$', '$') for w in words]


def unit_settings(path):
    settings = {}
    with open(path) as fh:
        for line in fh:
            line = line.rstrip('\n')
            if '=' in line and not line.startswith(('#', '[')):
                key, value = line.split('=', 1)
                settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def vaulted(tmp_path):
    """A vault password file (0600) and a helper that writes a vault-encrypted vars file."""
    password_file = tmp_path / 'vault-pass'
    password_file.write_text('vault-Pw-%s\n' % os.urandom(6).hex())
    os.chmod(str(password_file), 0o600)

    def encrypt(name, data):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        os.chmod(str(path), 0o600)
        proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-vault'), 'encrypt', '--vault-password-file',
                               str(password_file), str(path)], capture_output=True, text=True, env=ansible_env(),
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert b'$ANSIBLE_VAULT' in path.read_bytes()
        return str(path)
    encrypt.password_file = str(password_file)
    return encrypt


def test_units_render_and_pass_systemd_analyze_verify(tmp_path, vaulted):
    secrets = vaulted('secrets.yml', {'homelab_demo_pg_password': 'x'})
    os.chmod(secrets, 0o644)  # vault-encrypted: others may read it (a plain one is refused)
    proc = _play(tmp_path, status_timer_inventory=INVENTORY, status_timer_vault_password_file=vaulted.password_file,
                 status_timer_extra_vars_files=[secrets], status_timer_interval=7,
                 status_timer_dashboard_dir=str(tmp_path / ODD_DIR),
                 status_timer_environment={'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS})
    assert proc.returncode == 0, proc.stdout[-3000:]
    service, timer = _units(tmp_path)
    for path in (service, timer):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    svc = unit_settings(service)
    assert svc['Type'] == ['oneshot'] and svc['User'] == ['postgres'] and svc['UMask'] == ['0027']
    assert svc['NoNewPrivileges'] == ['yes'] and svc['TimeoutStartSec'] == ['240']
    assert svc['WorkingDirectory'] == [str(tmp_path)]
    argv = systemd_words(svc['ExecStart'][0])
    assert argv[0] == os.path.join(os.path.dirname(os.path.realpath(os.path.join(VENV_BIN, 'python'))),
                                   'ansible-playbook') or os.path.basename(argv[0]) == 'ansible-playbook'
    assert argv[1:] == ['homelab.migrations.migrate', '--check', '-i', INVENTORY, '--vault-password-file',
                        vaulted.password_file, '-e', '@' + secrets, '-e',
                        json.dumps({'migrate_all_dashboard_dir': str(tmp_path / ODD_DIR)})]
    tmr = unit_settings(timer)
    assert tmr['OnUnitActiveSec'] == ['7min'] and tmr['OnBootSec'] == ['7min']
    assert tmr['Unit'] == [NAME + '.service'] and tmr['WantedBy'] == ['timers.target']
    with open(vaulted.password_file) as fh:
        vault_password = fh.read().strip()
    for path in (service, timer):
        with open(path) as fh:
            assert vault_password not in fh.read()

    if not SYSTEMD_ANALYZE:
        pytest.skip('systemd-analyze is not installed (apt-get install systemd): the units were not verified')
    verify = subprocess.run([SYSTEMD_ANALYZE, 'verify', '--man=no', service, timer], capture_output=True, text=True,
                            timeout=120, check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == '', verify.stderr
    # the check is live: a broken copy of the same unit fails it
    broken = str(tmp_path / 'broken' / (NAME + '.service'))
    os.makedirs(os.path.dirname(broken))
    with open(service) as fh, open(broken, 'w') as out:
        out.write(fh.read().replace('WorkingDirectory=/', 'WorkingDirectory='))
    verify = subprocess.run([SYSTEMD_ANALYZE, 'verify', '--man=no', broken], capture_output=True, text=True,
                            timeout=120, check=False)
    assert verify.returncode != 0 and 'WorkingDirectory' in verify.stderr


@pytest.mark.parametrize('case', ['root', 'secret_extra_var', 'url_with_password', 'open_vault_file',
                                  'missing_inventory', 'nested_secret_key', 'url_password_with_slash',
                                  'conninfo_password', 'world_writable_umask', 'open_plain_vars_file',
                                  'writable_inventory', 'writable_inventory_dir'])
def test_refused_settings_write_no_unit(tmp_path, vaulted, case):
    more = {'status_timer_inventory': INVENTORY}
    if case == 'root':
        more['status_timer_user'] = 'root'
    elif case == 'secret_extra_var':
        more['status_timer_extra_vars'] = {'homelab_demo_pg_password': 'Cnry-hunter2'}
    elif case == 'url_with_password':
        more['status_timer_environment'] = {'DATABASE': 'postgresql://homelab:Cnry-hunter2@db/x'}
    elif case == 'open_vault_file':
        os.chmod(vaulted.password_file, 0o644)
        more['status_timer_vault_password_file'] = vaulted.password_file
    elif case == 'missing_inventory':
        more['status_timer_inventory'] = str(tmp_path / 'no-such-inventory.yml')
    # red team: a secret below the top level of the extra vars (the services' own settings), a URL whose
    # password holds '/' (the old pattern stopped there), a conninfo keyword, a umask leaving files world-writable
    elif case == 'nested_secret_key':
        more['status_timer_extra_vars'] = {'migrate_all_services': {'dashboard': {'db': {'pg_pass': 'Cnry-hunter2'}}}}
    elif case == 'url_password_with_slash':
        more['status_timer_extra_vars'] = {'migrate_all_services': {'dashboard': {
            'url': 'postgresql://homelab:Cnry/hunter2@db/x'}}}
    elif case == 'conninfo_password':
        more['status_timer_environment'] = {'PGCONNINFO': 'host=db password=Cnry-hunter2'}
    elif case == 'world_writable_umask':
        more['status_timer_umask'] = '0000'
    elif case in ('writable_inventory', 'writable_inventory_dir'):  # anyone could add host_vars / a python
        folder = tmp_path / 'inv'
        folder.mkdir()
        shutil.copy(INVENTORY, str(folder / 'hosts.yml'))
        os.chmod(str(folder / ('hosts.yml' if case == 'writable_inventory' else '.')), 0o666 if case ==
                 'writable_inventory' else 0o1777)
        more['status_timer_inventory'] = str(folder / 'hosts.yml')
    elif case == 'open_plain_vars_file':  # a secrets file the user forgot to encrypt, readable by all
        plain = tmp_path / 'secrets.yml'
        plain.write_text('homelab_demo_pg_password: Cnry-hunter2\n')
        os.chmod(str(plain), 0o644)
        more['status_timer_extra_vars_files'] = [str(plain)]
    proc = _play(tmp_path, **more)
    assert proc.returncode != 0
    assert 'status_timer: ' in proc.stdout
    assert not os.path.exists(_units(tmp_path)[0])
    assert 'Cnry-hunter2' not in proc.stdout + proc.stderr


def test_the_service_command_refreshes_the_dashboard_in_check_mode(pg, tmp_path, vaulted):
    lab = Homelab(pg, tmp_path)
    try:
        lab.move('dashboard', '004')
        before = lab.snapshot()
        ev = lab.extra_vars(confirm=False)
        secrets = vaulted('secrets.yml', dict((k, v) for k, v in ev.items() if k.startswith('homelab_demo_')
                                              or k == 'migrate_all_audit_log'))
        proc = _play(tmp_path, status_timer_inventory=INVENTORY, status_timer_vault_password_file=vaulted.password_file,
                     status_timer_extra_vars_files=[secrets], status_timer_dashboard_dir=str(tmp_path / ODD_DIR),
                     status_timer_extra_vars={'migrate_all_dashboard_refresh': 10},
                     status_timer_environment={'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
                                               'ANSIBLE_LOCALHOST_WARNING': '0'})
        assert proc.returncode == 0, proc.stdout[-3000:]
        service, timer = _units(tmp_path)
        svc = unit_settings(service)
        # what systemd gives a service of User=, then the unit's Environment=
        env = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin', 'HOME': os.environ.get('HOME', '/root'),
               'LANG': 'C.UTF-8'}
        for value in svc['Environment']:
            env.update(word.split('=', 1) for word in systemd_words(value))
        umask = os.umask(int(svc['UMask'][0], 8))
        try:
            run = subprocess.run(systemd_words(svc['ExecStart'][0]), cwd=svc['WorkingDirectory'][0], env=env,
                                 capture_output=True, text=True, timeout=int(svc['TimeoutStartSec'][0]),
                                 stdin=subprocess.DEVNULL, check=False)
        finally:
            os.umask(umask)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert lab.snapshot() == before, 'check mode changed a database'
        dash = tmp_path / ODD_DIR
        with open(str(dash / 'api' / 'migrations' / 'status')) as fh:
            doc = json.load(fh)
        assert doc['overall_status'] == 'pending'
        assert dict((n, s['status']) for n, s in doc['services'].items()) == {
            'dashboard': 'pending', 'stream-bot': 'pending', 'discord-bot': 'pending'}
        assert doc['services']['dashboard']['current_revision'] == '004'
        with open(str(dash / 'monitoring' / 'index.html')) as fh:
            assert '<meta name="homelab-refresh-seconds" content="10">' in fh.read()
        # the password: only in the vault-encrypted file
        texts = [run.stdout, run.stderr, proc.stdout]
        for path in [service, timer] + [os.path.join(b, f) for b, _d, fs in os.walk(str(dash)) for f in fs]:
            with open(path, 'rb') as fh:
                texts.append(fh.read().decode('utf-8', 'replace'))
        for text in texts:
            assert lab.canary not in text and pg.password not in text
        assert set(DB_VARS.values()) <= set(json.loads(json.dumps(ev)))
    finally:
        lab.drop()


def test_role_docs_and_readme_exist():
    base = os.path.join(REPO, 'roles', 'status_timer')
    with open(os.path.join(base, 'README.md')) as fh:
        readme = fh.read()
    assert 'status_timer_vault_password_file' in readme and 'systemctl' in readme
    with open(os.path.join(base, 'meta', 'argument_specs.yml')) as fh:
        specs = fh.read()
    with open(os.path.join(base, 'defaults', 'main.yml')) as fh:
        defaults = re.findall(r'^(status_timer_\w+):', fh.read(), re.M)
    for name in defaults:
        assert '      %s:' % name in specs, name
