# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adapter registry: tool name -> adapter class. A new tool adds one branch here and its name to spec.TOOLS.

Each adapter is imported when a service of its tool is read, so a drizzle-only run never imports the
alembic adapter's dependencies (alembic, SQLAlchemy).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.spec import TOOLS


def get_adapter(spec, dburl):
    """The adapter for ``spec['tool']``, built from a validated spec and its DbUrl."""
    tool = spec.get('tool')
    if tool == 'alembic':
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.adapter import AlembicAdapter
        return AlembicAdapter(spec, dburl)
    if tool == 'drizzle':
        from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle.adapter import DrizzleAdapter
        return DrizzleAdapter(spec, dburl)
    raise ValueError('service %r: unknown tool %r (known: %s)' % (spec.get('name'), tool, ', '.join(TOOLS)))
