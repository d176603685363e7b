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
