# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adapter registry: tool name -> adapter class. A new tool adds one import and one entry."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# tool -> (module under module_utils, class): imported when a service of that tool is read, so a
# drizzle-only run never imports the alembic adapter's dependencies (alembic, SQLAlchemy)
ADAPTERS = {
    'alembic': ('alembic_adapter', 'AlembicAdapter'),
    'drizzle': ('drizzle_adapter', 'DrizzleAdapter'),
}


def adapter_class(tool):
    """The adapter class of ``tool`` (KeyError for an unknown tool)."""
    if tool == 'alembic':
        from ansible_collections.homelab.migrations.plugins.module_utils.alembic_adapter import AlembicAdapter
        return AlembicAdapter
    if tool == 'drizzle':
        from ansible_collections.homelab.migrations.plugins.module_utils.drizzle_adapter import DrizzleAdapter
        return DrizzleAdapter
    raise KeyError(tool)


def get_adapter(spec, dburl):
    """The adapter for ``spec['tool']``, built from a validated spec and its DbUrl."""
    try:
        cls = adapter_class(spec['tool'])
    except KeyError:
        raise ValueError('service %r: unknown tool %r (known: %s)' % (spec.get('name'), spec.get('tool'),
                                                                      ', '.join(sorted(ADAPTERS))))
    return cls(spec, dburl)
