"""Where the real projects' histories are: the shared corpus folder and the Alembic trees written from it.

The corpus (drizzle folders of public projects, and alembic_trees.py) is read where it lies and never
copied into the project. ``scripts/setup.sh`` runs alembic_trees.py into the git-ignored ``.cache/corpus``.
Tests skip with a reason when either is absent (as on a user's machine).
"""

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIZZLE_FOLDERS = ('ai-chatbot', 'homarr', 'dittofeed')
ALEMBIC_TREES = ('optuna', 'open-webui', 'dagster', 'prefect')


def corpus_dir():
    """The shared corpus folder (HOMELAB_CORPUS, else ../shared/corpus beside the checkout), or None."""
    candidates = [os.environ.get('HOMELAB_CORPUS'), os.path.join(REPO, '..', 'shared', 'corpus'),
                  os.path.join(REPO, '..', '..', 'shared', 'corpus')]
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, 'README.md')):
            return os.path.abspath(path)
    return None


def drizzle_folder(name):
    base = corpus_dir()
    if base is None:
        pytest.skip('the shared corpus folder is absent (set HOMELAB_CORPUS or put it at ../shared/corpus)')
    path = os.path.join(base, 'drizzle', name)
    if not os.path.isfile(os.path.join(path, 'meta', '_journal.json')):
        pytest.skip('corpus drizzle folder %s is absent' % path)
    return path


def alembic_tree(name):
    cache = os.environ.get('HOMELAB_CORPUS_CACHE') or os.path.join(REPO, '.cache', 'corpus')
    path = os.path.join(cache, name)
    if not os.path.isfile(os.path.join(path, 'alembic.ini')):
        pytest.skip('corpus Alembic tree %s is absent: scripts/setup.sh writes it with the shared corpus '
                    'alembic_trees.py (needs the corpus folder and PyPI)' % path)
    return path
