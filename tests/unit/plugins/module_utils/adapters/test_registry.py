"""A tool's service-spec keys, checks and docs come from its own options module (adapters/<tool>/options.py)
through the registry: a fake third tool registered with one entry shows up in the argument spec, the defaults,
the checks, the adapter lookup and the generated docs (docs/adding-a-tool.md walks through a real one)."""

import types

import pytest
import yaml

from ansible_collections.homelab.migrations.plugins.module_utils import spec
from ansible_collections.homelab.migrations.plugins.module_utils.adapters import registry
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import options as alembic_options
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import Adapter
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import options as drizzle_options

from unit.plugins.doc_fragments.test_service import load_generator


class FlywayAdapter(Adapter):
    tool = 'flyway'


def _flyway():
    tool = types.ModuleType('flyway_options')
    tool.TOOL = 'flyway'
    tool.OPTIONS = dict(
        flyway_locations=dict(type='str', default='sql', check='relative_path',
                              description=['Flyway only. The migrations folder, relative to O(SVC.path).']),
        flyway_table=dict(type='str', default='flyway_schema_history', check='sql_name',
                          description=['Flyway only. The history table.']),
        flyway_command=dict(type='list', elements='str', version_added='0.2.0',
                            check=lambda value: None if value else 'flyway_command must not be empty',
                            description=['Flyway only. The command.', ('single', 'Only in the apply module.')]),
    )
    tool.NOTES = ['Flyway services (O(SVC.tool=flyway)) run the service\'s own C(flyway).']
    tool.REQUIREMENTS = ['flyway on the managed host for O(SVC.tool=flyway)']
    tool.adapter_class = lambda: FlywayAdapter
    tool.missing_library = lambda: ('pyflyway', ImportError('No module named pyflyway'))
    return tool


@pytest.fixture
def flyway(monkeypatch):
    monkeypatch.setattr(registry, 'TOOLS', registry.TOOLS + (_flyway(),))


def _service(**kw):
    base = dict(name='svc', tool='flyway', path='/srv/svc', database_url='postgresql://u:pw@h/db')
    base.update(kw)
    return spec.service_defaults(base)


def test_the_real_tools_keys_come_from_their_options_modules():
    tool_keys = [key for tool in (alembic_options, drizzle_options) for key in tool.OPTIONS]
    keys = list(spec.SERVICE_OPTIONS)
    assert keys == list(spec.SHARED_HEAD) + tool_keys + list(spec.SHARED_TAIL)
    assert spec.SERVICE_OPTIONS['tool']['choices'] == ['alembic', 'drizzle'] == list(registry.tool_names())
    assert all(not set(opt) & set(spec.DOC_KEYS) for opt in spec.SERVICE_OPTIONS.values())


def test_a_registered_tool_is_in_the_argument_spec_and_its_defaults(flyway):
    options = spec.service_options()
    assert options['tool']['choices'] == ['alembic', 'drizzle', 'flyway']
    assert options['flyway_command'] == dict(type='list', elements='str')
    assert _service()['flyway_table'] == 'flyway_schema_history' and _service()['flyway_locations'] == 'sql'
    assert spec.validate_service(_service()).host == 'h'


@pytest.mark.parametrize('key,value,match', [
    ('flyway_locations', '../elsewhere', "'svc': flyway_locations must be a path inside the service directory"),
    ('flyway_table', 'x' * 64, "'svc': flyway_table must be a non-empty name of at most 63"),
    ('flyway_command', [], "'svc': flyway_command must not be empty"),
])
def test_a_registered_tool_checks_its_own_keys(flyway, key, value, match):
    with pytest.raises(spec.SpecError, match=match):
        spec.validate_service(_service(**{key: value}))


def test_an_unregistered_tool_is_refused_and_its_keys_unknown():
    with pytest.raises(spec.SpecError, match="tool must be one of alembic, drizzle, got 'flyway'"):
        spec.validate_service(dict(name='svc', tool='flyway', path='/srv', database_url='postgresql://h/db',
                                   backup='auto'))
    with pytest.raises(spec.SpecError, match='unknown key.*flyway_table'):
        spec.service_defaults(dict(name='svc', tool='drizzle', path='/srv', flyway_table='t'))


def test_the_registry_builds_the_tools_adapter_and_names_its_library(flyway):
    adapter = registry.get_adapter(_service(), spec.validate_service(_service()))
    assert isinstance(adapter, FlywayAdapter)
    assert registry.missing_library(['drizzle', 'flyway'])[0] == 'pyflyway'
    assert registry.missing_library(['drizzle']) is None


def test_the_generated_docs_pick_the_tool_up(flyway):
    gen = load_generator()
    texts = gen.render()
    namespace = {}
    exec(compile(texts[gen.FRAGMENT], gen.FRAGMENT, 'exec'), namespace)  # noqa: S102  the generated fragment
    fragment = namespace['ModuleDocFragment']
    single = yaml.safe_load(fragment.SINGLE)
    services = yaml.safe_load(fragment.SERVICES)
    sub = single['options']['service']['suboptions']
    assert sub['flyway_locations'] == dict(
        description=['Flyway only. The migrations folder, relative to O(service.path).'], type='str', default='sql')
    assert sub['flyway_command']['version_added'] == '0.2.0'
    assert sub['flyway_command']['description'] == ['Flyway only. The command.', 'Only in the apply module.']
    assert sub['tool']['choices'] == ['alembic', 'drizzle', 'flyway']
    listed = services['options']['services']['suboptions']
    assert listed['flyway_command']['description'] == ['Flyway only. The command.']
    assert "Flyway services (O(services[].tool=flyway)) run the service's own C(flyway)." in services['notes']
    assert 'flyway on the managed host for O(service.tool=flyway)' in single['requirements']
    role = yaml.safe_load(texts[gen.ROLE_SPECS])['argument_specs']['main']['options']['migrate_all_services']
    assert role['options']['flyway_locations']['description'] == [
        'Flyway only. The migrations folder, relative to O(migrate_all_services[].path).']
    assert role['options']['flyway_table']['default'] == 'flyway_schema_history'
