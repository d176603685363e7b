"""spec.py: the service spec checks, dependency order, and the docs that must match SERVICE_OPTIONS."""

import yaml
import pytest

from ansible_collections.homelab.migrations.plugins.doc_fragments.service import ModuleDocFragment
from ansible_collections.homelab.migrations.plugins.doc_fragments.apply_step import ModuleDocFragment as StepFragment
from ansible_collections.homelab.migrations.plugins.module_utils.plan import APPLY_OPTIONS
from ansible_collections.homelab.migrations.plugins.module_utils.service_step import BACKUP_OPTIONS, RECORD_OPTIONS
from ansible_collections.homelab.migrations.plugins.module_utils.status import STATUS_OPTIONS
from ansible_collections.homelab.migrations.plugins.module_utils.spec import (
    CONNECTION_OPTIONS, SERVICE_OPTIONS, SpecError, dependency_order, service_defaults, validate_service,
    validate_services)
from ansible_collections.homelab.migrations.plugins.modules import homelab_migration_apply, homelab_migration_status


def spec(name='svc', **kw):
    base = dict(name=name, tool='drizzle', path='/srv/%s' % name, database_url='postgresql://u:pw-secret@h/db')
    base.update(kw)
    return service_defaults(base)


# ------------------------------------------------------------------------------------ one service
def test_defaults_are_filled_and_copied():
    a, b = spec('a'), spec('b')
    assert a['depends_on'] == [] and a['migrations_schema'] == 'drizzle' and a['target'] == 'head'
    assert a['alembic_command'] is None and a['backup'] == 'auto'
    a['depends_on'].append('x')
    assert b['depends_on'] == [] and SERVICE_OPTIONS['depends_on']['default'] == []


def test_unknown_key_is_named():
    with pytest.raises(SpecError, match='unknown key.*databse_url'):
        service_defaults(dict(name='a', tool='drizzle', path='/x', databse_url='postgresql://h/db'))


@pytest.mark.parametrize('name', ['a', 'stream-bot', 'x_1', '0abc', 'a' * 63])
def test_good_names(name):
    assert validate_service(spec(name)).host == 'h'


@pytest.mark.parametrize('name', ['', 'Stream', '-a', '_a', 'a' * 64, 'a b', 'a/b', 'ä', None, 5])
def test_bad_names(name):
    with pytest.raises(SpecError, match='not valid'):
        validate_service(spec(name))


@pytest.mark.parametrize('key,value,match', [
    ('tool', 'flyway', 'tool must be one of'),
    ('path', '', 'path is required'),
    ('alembic_config', '/etc/alembic.ini', 'inside the service directory'),
    ('migrations_dir', '../other/migrations', 'inside the service directory'),
    ('migrations_table', 'x' * 64, 'at most 63'),
    ('version_table_schema', '', 'non-empty'),
    ('backup', 'sometimes', 'backup must be one of'),
    ('target', '  ', 'target must be a non-empty'),
    ('health_check', 'ftp://h/', 'http'),
    ('alembic_command', [], 'non-empty list'),
    ('alembic_command', ['alembic', ''], 'non-empty list'),
])
def test_bad_values_are_named(key, value, match):
    with pytest.raises(SpecError, match=match) as err:
        validate_service(spec(**{key: value}))
    assert "'svc'" in str(err.value)


def test_bad_url_message_is_masked():
    with pytest.raises(SpecError) as err:
        validate_service(spec(database_url='mysql://u:pw-secret@h/db'))
    assert 'pw-secret' not in str(err.value) and "'svc'" in str(err.value)


# ---------------------------------------------------------------------------------- service lists
def test_duplicate_names():
    with pytest.raises(SpecError, match="'a' is used twice"):
        validate_services([spec('a'), spec('b'), spec('a')])


def test_unknown_dependency_lists_the_known_ones():
    with pytest.raises(SpecError, match="'b' depends on 'nope'.*known: a, b"):
        validate_services([spec('a'), spec('b', depends_on=['nope'])])


def test_self_dependency():
    with pytest.raises(SpecError, match='depends on itself'):
        validate_services([spec('a', depends_on=['a'])])


def test_dependency_order_keeps_list_order_for_ties():
    specs = [spec('c', depends_on=['a']), spec('b'), spec('a'), spec('d', depends_on=['c', 'b'])]
    validate_services(specs)
    assert [s['name'] for s in dependency_order(specs)] == ['a', 'c', 'b', 'd']


def test_dependency_cycle_is_named():
    specs = [spec('a', depends_on=['c']), spec('b', depends_on=['a']), spec('c', depends_on=['b'])]
    validate_services(specs)  # names are all known; only the order finds the cycle
    with pytest.raises(SpecError, match='cycle: a -> c -> b -> a'):
        dependency_order(specs)


# ------------------------------------------------------------------- docs == argument spec, exactly
def _fragment(attr):
    return yaml.safe_load(getattr(ModuleDocFragment, attr))['options']


def _compare(doc_options, argspec, where):
    assert set(doc_options) == set(argspec), where
    for key, opt in argspec.items():
        doc = doc_options[key]
        assert doc.get('type', 'str') == opt.get('type', 'str'), (where, key)
        assert doc.get('required', False) == opt.get('required', False), (where, key)
        assert doc.get('default') == opt.get('default'), (where, key)
        assert doc.get('choices') == opt.get('choices'), (where, key)
        assert doc.get('elements') == opt.get('elements'), (where, key)
        assert doc.get('description'), (where, key)
        if opt.get('options') or doc.get('suboptions'):
            _compare(doc.get('suboptions') or {}, opt.get('options') or {}, '%s.%s' % (where, key))


@pytest.mark.parametrize('attr,option,typ', [('SERVICES', 'services', 'list'), ('SINGLE', 'service', 'dict')])
def test_service_fragments_match_service_options(attr, option, typ):
    options = _fragment(attr)
    assert list(options) == [option]
    assert options[option]['type'] == typ and options[option]['required'] is True
    _compare(options[option]['suboptions'], SERVICE_OPTIONS, attr)
    assert SERVICE_OPTIONS['database_url'].get('no_log') is True


def test_connection_fragment_matches():
    _compare(_fragment('CONNECTION'), CONNECTION_OPTIONS, 'CONNECTION')


@pytest.mark.parametrize('module,own', [
    (homelab_migration_status, STATUS_OPTIONS),
    (homelab_migration_apply, dict(APPLY_OPTIONS, backup=dict(type='dict', options=BACKUP_OPTIONS),
                                   record=dict(type='dict', options=RECORD_OPTIONS), journal=dict(type='path'))),
])
def test_module_docs_match_argument_spec(module, own):
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc['options'])
    if 'homelab.migrations.apply_step' in doc.get('extends_documentation_fragment', []):
        options.update(yaml.safe_load(StepFragment.DOCUMENTATION)['options'])
    _compare(options, own, module.__name__)
    argspec = module.argument_spec()
    assert set(argspec) == set(own) | set(CONNECTION_OPTIONS) | {'services' if 'services' in argspec else 'service'}
    assert doc['version_added'] == '0.1.0'
    yaml.safe_load(module.EXAMPLES)
    assert yaml.safe_load(module.RETURN)


def test_apply_examples_show_upgrade_downgrade_and_revert_by_tag():
    tasks = yaml.safe_load(homelab_migration_apply.EXAMPLES)
    args = [t['homelab.migrations.homelab_migration_apply'] for t in tasks]
    targets = [a.get('target') for a in args]
    assert None in targets and '-1' in targets
    assert any(a.get('service', {}).get('tool') == 'drizzle' and a.get('target', '').startswith('0003_')
               for a in args if isinstance(a.get('service'), dict))
