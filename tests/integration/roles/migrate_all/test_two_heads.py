"""The role with an Alembic service that keeps two permanent heads (expand/contract), through ansible-playbook.

With ``target: heads`` the run migrates it like ``alembic upgrade heads`` (status pending, then up to date);
with ``target: head`` it is refused before anything is touched, as ``alembic upgrade head`` refuses it.
"""

import os

import pytest

from integration.roles.migrate_all.test_role import Homelab

BRANCH = '''"""{rev} ({label} branch)

Revision ID: {rev}
Revises: 006
"""
from alembic import op
import sqlalchemy as sa

revision = {rev!r}
down_revision = '006'
branch_labels = ({label!r},)
depends_on = {deps!r}


def upgrade():
    op.create_table('t_{label}', sa.Column('id', sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table('t_{label}')
'''


@pytest.fixture
def lab(pg, tmp_path):
    lab = Homelab(pg, tmp_path)
    versions = os.path.join(lab.services_dir, 'dashboard', 'alembic', 'versions')
    for rev, label, deps in (('007e', 'expand', None), ('007c', 'contract', '007e')):
        with open(os.path.join(versions, '%s_%s.py' % (rev, label)), 'w') as fh:
            fh.write(BRANCH.format(rev=rev, label=label, deps=deps))
    yield lab
    lab.drop()


def services(lab, target):
    return [{'name': 'dashboard', 'tool': 'alembic', 'path': os.path.join(lab.services_dir, 'dashboard'),
             'database_url': lab.dbs['dashboard'].password_url, 'target': target}]


def test_target_heads_migrates_both_heads(lab):
    proc = lab.play(check=True, migrate_all_services=services(lab, 'heads'))
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'multiple_heads' not in proc.output
    proc = lab.play(migrate_all_services=services(lab, 'heads'))
    assert proc.returncode == 0, proc.output[-3000:]
    # what `alembic upgrade heads` leaves: 007c depends on 007e, so the version table holds 007c alone
    assert lab.dbs['dashboard'].query('SELECT version_num FROM alembic_version') == [('007c',)]
    assert lab.dbs['dashboard'].query("SELECT to_regclass('t_expand') IS NOT NULL, "
                                      "to_regclass('t_contract') IS NOT NULL") == [(True, True)]
    assert [r['outcome'] for r in lab.role_records() if r.get('service') == 'dashboard'][-1] == 'success'


def test_target_head_with_two_heads_is_refused_before_anything(lab):
    before = lab.dbs['dashboard'].snapshot()
    proc = lab.play(migrate_all_services=services(lab, 'head'))
    assert proc.returncode != 0
    assert 'multiple_heads' in proc.output and 'target to heads' in proc.output
    assert lab.dbs['dashboard'].snapshot() == before
