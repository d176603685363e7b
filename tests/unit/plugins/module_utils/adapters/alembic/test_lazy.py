"""What a module imports: a drizzle-only run never imports alembic or SQLAlchemy, and the alembic
adapter's light import of alembic's revision machinery leaves the real package intact for later.

Each case runs in a fresh interpreter: the test process has alembic imported already.
"""

import json
import os
import subprocess
import sys
import textwrap

from harness.ansible import COLLECTIONS


def _run(code):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_drizzle_only_status_imports_neither_alembic_nor_sqlalchemy():
    out = _run('''
        import json, sys
        from ansible_collections.homelab.migrations.plugins.modules import homelab_migration_status  # noqa
        from ansible_collections.homelab.migrations.plugins.modules import homelab_migration_apply  # noqa
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.registry import get_adapter
        from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl
        spec = {'name': 'bot', 'tool': 'drizzle', 'path': '/nonexistent', 'migrations_dir': 'migrations',
                'migrations_table': '__drizzle_migrations', 'migrations_schema': 'drizzle'}
        adapter = get_adapter(spec, DbUrl('postgresql://u@localhost/db'))
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy'))
        print(json.dumps({'adapter': type(adapter).__name__, 'loaded': loaded}))
    ''')
    assert out == {'adapter': 'DrizzleAdapter', 'loaded': []}


def test_light_alembic_import_is_private_and_the_real_package_still_imports():
    out = _run('''
        import json, sys
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
        assert lazy.alembic_import_error() is None
        after_load = sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')
        # the adapter's copy works: a merge of two branches has one head
        R = lazy.Revision
        revs = [R('a', None), R('b', 'a'), R('c', 'a'), R('m', ('b', 'c'))]
        heads = list(lazy.RevisionMap(lambda: revs).heads)
        # and the real package is whole for whoever imports it next
        import alembic
        import alembic.command
        from alembic.script import ScriptDirectory
        from alembic.runtime.migration import MigrationContext
        print(json.dumps({'after_load': after_load, 'heads': heads, 'version': alembic.__version__,
                          'script': ScriptDirectory.__name__, 'ctx': MigrationContext.__name__,
                          'context': hasattr(alembic, 'context') and hasattr(alembic, 'op')}))
    ''')
    assert out['after_load'] == [], 'the light import must not leave stand-ins or partial modules behind'
    assert out['heads'] == ['m']
    assert out['script'] == 'ScriptDirectory' and out['ctx'] == 'MigrationContext' and out['context'] is True


def test_alembic_imported_first_is_reused():
    out = _run('''
        import json
        import alembic.script.revision as real
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
        assert lazy.alembic_import_error() is None
        print(json.dumps({'same': lazy.RevisionMap is real.RevisionMap and lazy.RevisionError is real.RevisionError}))
    ''')
    assert out == {'same': True}


def test_missing_alembic_is_reported_not_raised():
    out = _run('''
        import json, sys
        sys.modules['alembic'] = None  # what an interpreter without alembic sees
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError
        error = lazy.alembic_import_error()
        try:
            lazy.require_alembic()
            raised = None
        except AdapterError as exc:
            raised = str(exc)
        print(json.dumps({'error': type(error).__name__, 'raised': raised}))
    ''')
    assert out['error'] in ('ImportError', 'ModuleNotFoundError')
    assert 'pip install alembic' in out['raised']


ROWS_AFTER = '''
    import json, sys
    if sys.argv[-1] == 'plain':
        import alembic  # noqa: F401  (the adapter then uses the package as it is)
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.files import NoModule
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
    assert lazy.alembic_import_error() is None
    R = lazy.Revision
    revs = [R('a', None), R('b', 'a'), R('c', 'a', branch_labels=('side',)), R('d', 'c'),
            R('m', ('b', 'd')), R('x', None, dependencies=('b',)), R('y', 'x')]
    for rev in revs:
        rev.module = NoModule
    graph = type('G', (), {})()
    graph.map = lazy.RevisionMap(lambda: revs)
    cases = [([], ['a', 'b', 'c', 'd', 'm'], True), (['b', 'd'], ['m'], True), (['m'], ['m', 'd'], False),
             ([], ['a', 'b', 'x', 'y'], True), (['y', 'b'], ['y'], False)]
    out = [sorted(RevisionGraph.rows_after(graph, rows, steps, up)) for rows, steps, up in cases]
    print(json.dumps({'out': out, 'heads': sorted(graph.map.heads),
                      'light': 'alembic' not in sys.modules or sys.argv[-1] == 'plain'}))
'''


def test_light_import_predicts_the_version_table_as_the_plain_import():
    """HeadMaintainer/RevisionStep of the private copy give what the real package gives (merges, unmerges,
    dependencies), so check mode's to_revision does not depend on how alembic was imported."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    answers = []
    for mode in ('light', 'plain'):
        proc = subprocess.run([sys.executable, '-c', textwrap.dedent(ROWS_AFTER), mode], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        answers.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    light, plain = answers
    assert light['light'] is True
    assert light == plain
    assert light['out'][1] == ['m'] and light['heads'] == ['m', 'y']


def test_light_import_leaves_mako_to_the_real_package():
    out = _run('''
        import json, sys
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
        assert lazy.alembic_import_error() is None
        stand_ins_left = sorted(m for m in sys.modules if m.split('.')[0] in ('mako', 'alembic'))
        from alembic.util import pyfiles
        import mako.template
        print(json.dumps({'left': stand_ins_left, 'real': pyfiles.Template is mako.template.Template}))
    ''')
    assert out == {'left': [], 'real': True}


def test_loading_pauses_the_garbage_collector_and_freezes_what_it_made():
    out = _run('''
        import gc, json
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import lazy
        seen = []
        gc.callbacks.append(lambda phase, info: seen.append(phase))
        assert lazy.alembic_import_error() is None
        during = len(seen)
        enabled = gc.isenabled()
        frozen = gc.get_freeze_count()
        tracked = len(gc.get_objects())
        lazy._ALEMBIC.clear()
        gc.disable()
        assert lazy.alembic_import_error() is None
        print(json.dumps({'collections_during_load': during, 'enabled_after': enabled,
                          'disabled_stays': not gc.isenabled(), 'frozen': frozen > 50000, 'left': tracked}))
    ''')
    assert out.pop('left') < 1000, 'what alembic and SQLAlchemy made is frozen: later collections skip it'
    assert out == {'collections_during_load': 0, 'enabled_after': True, 'disabled_stays': True, 'frozen': True}


def test_revisions_without_sql_or_unread_values_never_import_the_sql_rules(tmp_path):
    out = _run('''
        import json, os, sys
        root = %r
        os.makedirs(os.path.join(root, 'alembic', 'versions'))
        with open(os.path.join(root, 'alembic.ini'), 'w') as fh:
            fh.write('[alembic]\\nscript_location = %%(here)s/alembic\\n')
        for rev, down in (('a', None), ('b', 'a')):
            with open(os.path.join(root, 'alembic', 'versions', rev + '.py'), 'w') as fh:
                fh.write('revision = %%r\\ndown_revision = %%r\\nfrom alembic import op\\n\\n\\ndef upgrade():\\n'
                         '    op.create_table("t_%%s")\\n\\n\\ndef downgrade():\\n    op.drop_table("t_%%s")\\n'
                         %% (rev, down, rev, rev))
        from ansible_collections.homelab.migrations.plugins.module_utils import apply  # noqa
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import adapter  # noqa
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import checks
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph
        graph = RevisionGraph(AlembicConfig(root, 'alembic.ini'))
        assert graph.syntax_problems(['a', 'b'], 'upgrade') == []
        found = checks.transaction_findings(None, graph, graph.config, ['a', 'b'], 'up')
        loaded = sorted(m.rsplit('.', 1)[-1] for m in sys.modules
                        if m.rsplit('.', 1)[-1] in ('binding', 'lexer', 'squawk', 'transaction', 'enums'))
        print(json.dumps({'ok': graph.ok, 'found': found, 'loaded': loaded}))
    ''' % str(tmp_path))
    assert out == {'ok': True, 'found': [], 'loaded': []}
