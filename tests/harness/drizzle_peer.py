"""The drizzle-orm peer: the real drizzle-orm migrator (tests/peers/drizzle/peer.js) run through Node.

``DrizzlePeer`` can be used outside pytest (benchmarks); the ``drizzle_peer`` fixture installs the peer
with ``npm ci`` when its node_modules is missing and skips only when Node or npm are not installed.
The database URL reaches the peer through ``DATABASE_URL`` in its environment, never on its command line.
"""

import json
import os
import shutil
import subprocess

import pytest

PEER_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', 'peers', 'drizzle'))
PEER_JS = os.path.join(PEER_DIR, 'peer.js')
INSTALL_HINT = 'install Node.js 18+ and npm (Debian: apt-get install nodejs npm) to run the drizzle-orm peer tests'


class DrizzlePeerError(RuntimeError):
    pass


class DrizzlePeer:
    """Runs peer.js subcommands; each returns the peer's JSON answer as a dict."""

    def __init__(self, node=None, npm=None, peer_dir=PEER_DIR, timeout=120):
        self.node = node or shutil.which('node')
        self.npm = npm or shutil.which('npm')
        self.peer_dir = peer_dir
        self.timeout = timeout

    @property
    def available(self):
        return bool(self.node and self.npm)

    def installed(self):
        mods = os.path.join(self.peer_dir, 'node_modules')
        return all(os.path.isdir(os.path.join(mods, p)) for p in ('drizzle-orm', 'pg', 'drizzle-kit'))

    def ensure_installed(self):
        """npm ci from the committed lock file when node_modules is missing or incomplete."""
        if self.installed():
            return
        out = subprocess.run([self.npm, 'ci', '--no-audit', '--no-fund', '--loglevel=error'], cwd=self.peer_dir,
                             check=False, capture_output=True, text=True, timeout=900)
        if out.returncode != 0 or not self.installed():
            raise DrizzlePeerError('npm ci in %s failed (exit %s): %s\nrun scripts/setup.sh or `npm ci` there by hand'
                                   % (self.peer_dir, out.returncode, (out.stderr or out.stdout)[-2000:]))

    def versions(self):
        result = {}
        for pkg in ('drizzle-orm', 'pg', 'drizzle-kit'):
            with open(os.path.join(self.peer_dir, 'node_modules', pkg, 'package.json')) as fh:
                result[pkg] = json.load(fh)['version']
        return result

    def run(self, command, folder, url, table=None, schema=None, check=True):
        argv = [self.node, PEER_JS, command, '--folder', os.path.abspath(folder)]
        if table is not None:
            argv += ['--table', table]
        if schema is not None:
            argv += ['--schema', schema]
        env = dict(os.environ, DATABASE_URL=url)
        out = subprocess.run(argv, cwd=self.peer_dir, env=env, check=False, capture_output=True, text=True,
                             timeout=self.timeout)
        try:
            result = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DrizzlePeerError('peer.js %s gave no JSON (exit %d): stdout=%r stderr=%r'
                                   % (command, out.returncode, out.stdout[-2000:], out.stderr[-2000:]))
        result['exit_code'] = out.returncode
        if check and (out.returncode != 0 or not result.get('ok')):
            raise DrizzlePeerError('peer.js %s failed (exit %d): %s' % (command, out.returncode, result.get('error')))
        return result

    def migrate(self, folder, url, table=None, schema=None, check=True):
        """drizzle-orm's migrate(); returns {'ok', 'rows': [{id, hash, created_at}]} or raises DrizzlePeerError."""
        return self.run('migrate', folder, url, table, schema, check)

    def status(self, folder, url, table=None, schema=None, check=True):
        """What drizzle-orm's migrate() would apply next: {'ok', 'rows', 'entries', 'applied', 'pending', ...}."""
        return self.run('status', folder, url, table, schema, check)


@pytest.fixture(scope='session')
def drizzle_peer():
    peer = DrizzlePeer()
    if not peer.available:
        pytest.skip('drizzle-orm peer needs node and npm on PATH (node=%s, npm=%s); %s'
                    % (peer.node, peer.npm, INSTALL_HINT))
    peer.ensure_installed()
    return peer
