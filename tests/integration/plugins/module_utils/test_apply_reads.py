"""An apply parses its service's history once: the check of what stayed reuses it and reads only the database.

Real server. Counts, during one run_apply, how often the adapter read the state (read_state: under the lock,
then after the run) and how often it parsed the history (alembic's config + revision graph, drizzle's journal).
"""

import os
import sys

from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import adapter as drizzle_adapter
from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service

SERVICES = os.path.join(REPO, 'examples', 'homelab', 'services')
ALEMBIC = os.path.join(os.path.dirname(sys.executable), 'alembic')


def _counting(monkeypatch, owner, name, counts, key):
    real = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[key] = counts.get(key, 0) + 1
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)


def _apply(spec, **params):
    result = run_apply(spec, validate_service(spec), params)
    assert not result.get('failed'), result.get('msg')
    return result


def test_alembic_apply_parses_the_revision_files_once(fresh_db, monkeypatch):
    spec = service_defaults(dict(name='dashboard', tool='alembic', path=os.path.join(SERVICES, 'dashboard'),
                                 database_url=fresh_db.password_url, alembic_command=[ALEMBIC]))
    counts = {}
    _counting(monkeypatch, AlembicAdapter, 'read_state', counts, 'read')
    _counting(monkeypatch, AlembicAdapter, 'load_graph', counts, 'parse')
    result = _apply(spec, target='head')
    assert result['changed'] and result['status']['pending'] == 0
    assert counts == {'read': 2, 'parse': 1}


def test_drizzle_apply_reads_the_journal_once(fresh_db, monkeypatch):
    spec = service_defaults(dict(name='stream-bot', tool='drizzle', path=os.path.join(SERVICES, 'stream-bot'),
                                 database_url=fresh_db.password_url))
    counts = {}
    _counting(monkeypatch, drizzle_adapter.DrizzleAdapter, 'read_state', counts, 'read')
    _counting(monkeypatch, drizzle_adapter, 'load_journal', counts, 'parse')
    result = _apply(spec, target='0002_add_currency_system')
    assert result['changed'] and result['status']['pending'] == 2
    assert counts == {'read': 2, 'parse': 1}
