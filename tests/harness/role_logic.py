"""The migrate_all role's decisions, as one namespace for the tests (three plugin_utils modules and
module_utils.run_record, the outcome and record builders the apply module shares)."""

import types

from ansible_collections.homelab.migrations.plugins.module_utils import run_record
from ansible_collections.homelab.migrations.plugins.plugin_utils import recovery, selection, text

role_logic = types.SimpleNamespace(**dict(
    (name, getattr(module, name)) for module in (selection, recovery, text, run_record) for name in dir(module)
    if name.startswith('migrate_all_')))


def svc(name, *deps, **more):
    spec = {'name': name, 'tool': 'drizzle', 'path': '/srv/' + name,
            'database_url': 'postgresql://u:s3cret@db:5432/' + name.replace('-', '_'), 'depends_on': list(deps)}
    spec.update(more)
    return spec


HOMELAB = [svc('discord-bot', 'dashboard', 'stream-bot'), svc('stream-bot', 'dashboard'),
           svc('dashboard', tool='alembic')]


def status(**services):
    total = sum(s.get('pending', 0) for s in services.values())
    return {'success': True, 'overall_status': 'pending' if total else 'up_to_date', 'total_pending': total,
            'services': services}


def plan(changed=True, **more):
    result = {'changed': changed, 'from_revision': '0001', 'to_revision': '0003' if changed else '0001',
              'applied': ['0002', '0003'] if changed else [], 'reverted': []}
    result.update(more)
    return result


STATUS = {'success': True, 'overall_status': 'pending', 'total_pending': 1, 'services': {
    'bot': {'status': 'pending', 'tool': 'drizzle', 'current_revision': '0001_a', 'latest_revision': '0002_b',
            'applied': 2, 'pending': 1, 'pending_migrations': ['0002_b'], 'problems': [],
            'lock': {'held': False, 'holder': None},
            'findings': [
                {'migration': '0002_b', 'statement': 'CREATE INDEX CONCURRENTLY "i"\n  ON "users" ("c")',
                 'code': 'not_in_transaction', 'severity': 'error', 'message': 'PostgreSQL refuses it',
                 'source': 'homelab.migrations'},
                {'migration': '0002_b', 'statement': 'ALTER TABLE users ALTER COLUMN c TYPE text',
                 'code': 'changing-column-type', 'severity': 'warning', 'message': 'rewrites (table users: 2.3 GB)',
                 'source': 'squawk'}],
            'lint': {'linter': 'squawk', 'ran': True, 'reason': None}},
    'dash': {'status': 'pending', 'tool': 'alembic', 'pending': 1, 'pending_migrations': ['r2'], 'problems': [],
             'findings': [], 'lint': {'linter': 'squawk', 'ran': False, 'reason': 'alembic SQL needs env.py'}}}}
