# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adapter registry: tool name -> adapter class. A new tool adds one import and one entry."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.alembic_adapter import AlembicAdapter
from ansible_collections.homelab.migrations.plugins.module_utils.drizzle_adapter import DrizzleAdapter

ADAPTERS = {
    AlembicAdapter.tool: AlembicAdapter,
    DrizzleAdapter.tool: DrizzleAdapter,
}


def get_adapter(spec, dburl):
    """The adapter for ``spec['tool']``, built from a validated spec and its DbUrl."""
    try:
        cls = ADAPTERS[spec['tool']]
    except KeyError:
        raise ValueError('service %r: unknown tool %r (known: %s)' % (spec.get('name'), spec.get('tool'),
                                                                      ', '.join(sorted(ADAPTERS))))
    return cls(spec, dburl)
