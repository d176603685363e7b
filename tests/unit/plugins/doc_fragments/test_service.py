"""The generated option docs (the doc fragment, the role's service options) are exactly what
scripts/gen_options.py writes from spec.py and the tools' adapters/<tool>/options.py: edit those, then run
``python scripts/gen_options.py``."""

import importlib.util
import os

from harness.ansible import REPO


def load_generator():
    spec = importlib.util.spec_from_file_location('gen_options', os.path.join(REPO, 'scripts', 'gen_options.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_option_docs_are_fresh():
    stale = []
    for rel, text in sorted(load_generator().render().items()):
        with open(os.path.join(REPO, rel)) as fh:
            if fh.read() != text:
                stale.append(rel)
    assert not stale, 'stale: %s; run python scripts/gen_options.py' % ', '.join(stale)


def test_role_keeps_its_hand_written_parts():
    gen = load_generator()
    with open(os.path.join(REPO, gen.ROLE_SPECS)) as fh:
        text = fh.read()
    assert text.count(gen.BEGIN) == 1 and text.count(gen.END) == 1
    assert 'migrate_all_action:' in text.split(gen.END)[1]


def _documented(opt, context, prefix):
    """One suboption as ansible-doc reads it, built from its source (spec.py / options.py) for ``context``."""
    doc = {'description': load_generator().descriptions(opt, context, prefix)}
    for field in ('type', 'required', 'elements', 'default', 'choices', 'version_added'):
        if field in opt and not (field == 'required' and not opt[field]):
            doc[field] = opt[field]
    return doc


def _expected_fragment(context, suboptions):
    """The whole fragment for ``context`` as ansible-doc reads it, built from the sources, not from the file."""
    from ansible_collections.homelab.migrations.plugins.module_utils.adapters import registry
    gen = load_generator()
    name, typ, prefix, head = gen.CONTAINERS[context]
    option = dict(description=list(head), type=typ, required=True, suboptions=suboptions)
    if typ == 'list':
        option['elements'] = 'dict'
    doc = {'options': {name: option}}
    for field in ('NOTES', 'REQUIREMENTS'):
        texts = [text.replace('O(SVC.', 'O(%s.' % prefix) for tool in registry.tool_options()
                 for text in getattr(tool, field, [])]
        if texts:
            doc[field.lower()] = texts
    return doc


def test_each_service_fragment_documents_every_key_for_its_own_module():
    """SERVICES and SINGLE (generated text; ansible-test's yamllint needs each fragment as a string literal in the
    class, so the suboptions they share stand twice) must each be, as a whole, what the sources say for their module:
    a fragment's own paragraphs in it, the other's not, O(...) paths its own, the notes and requirements complete."""
    import yaml
    from ansible_collections.homelab.migrations.plugins.doc_fragments.service import ModuleDocFragment
    from ansible_collections.homelab.migrations.plugins.module_utils import spec
    for attr, context, name, prefix in (('SERVICES', 'services', 'services', 'services[]'),
                                        ('SINGLE', 'single', 'service', 'service')):
        doc = yaml.safe_load(getattr(ModuleDocFragment, attr))
        suboptions = doc['options'][name]['suboptions']
        expected = dict((key, _documented(opt, context, prefix)) for key, opt in spec.documented_options().items())
        assert suboptions == expected, attr
        assert doc == _expected_fragment(context, expected), attr  # the container, the notes, the requirements too
        assert 'O(SVC.' not in getattr(ModuleDocFragment, attr) and not any(
            line.startswith('@') for line in getattr(ModuleDocFragment, attr).splitlines())
        assert all('O(%s.' % prefix in text for text in doc['requirements'] if 'O(' in text)
    single = yaml.safe_load(ModuleDocFragment.SINGLE)['options']['service']['suboptions']
    services = yaml.safe_load(ModuleDocFragment.SERVICES)['options']['services']['suboptions']
    assert 'Not checked by this module.' in single['depends_on']['description']
    assert 'Not checked by this module.' not in services['depends_on']['description']
