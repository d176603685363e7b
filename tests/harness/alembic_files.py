"""Alembic revision files and projects in a temp directory, for the alembic adapter's tests without a database.

``template`` is a revision file as `alembic revision` writes it (alembic 1.13+'s script.py.mako), ``make_project``
a project (alembic.ini + the files), ``graph_of`` the project and its RevisionGraph, ``script`` an executable
stand-in for the alembic command with a given shebang line.
"""

import os

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.graph import RevisionGraph


TEMPLATE = '''\
"""{message}

Revision ID: {rev}
Revises: {down}
Create Date: 2025-01-01 00:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = {labels!r}
depends_on: Union[str, Sequence[str], None] = {deps!r}


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("SELECT 1")


def downgrade() -> None:
    """Downgrade schema."""
    pass
'''


def template(rev, down=None, labels=None, deps=None, message='a revision'):
    return TEMPLATE.format(rev=rev, down=down, labels=labels, deps=deps, message=message)


def make_project(root, files, ini=None, versions='alembic/versions'):
    root = os.fspath(root)
    os.makedirs(os.path.join(root, 'alembic'), exist_ok=True)
    with open(os.path.join(root, 'alembic.ini'), 'w') as fh:
        fh.write(ini if ini is not None else '[alembic]\nscript_location = %(here)s/alembic\npath_separator = os\n')
    for rel, text in files.items():
        path = os.path.join(root, versions, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as fh:
            fh.write(text.encode('utf-8') if isinstance(text, str) else text)
    return root


def graph_of(tmp_path, files, ini=None):
    root = make_project(tmp_path, files, ini=ini)
    return root, RevisionGraph(AlembicConfig(root, 'alembic.ini'))


def script(path, shebang):
    path.write_text('%s\nexit 0\n' % shebang)
    path.chmod(0o755)
    return str(path)
