# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tools: one line each in TOOLS below, each naming the tool's options module (adapters/<tool>/options.py).

An options module holds its tool's service-spec keys, their checks and docs (TOOL, OPTIONS, NOTES,
REQUIREMENTS), ``adapter_class()`` and optionally ``missing_library()``; docs/adding-a-tool.md walks through
adding one. The adapter itself is imported when a service of its tool is read, so a drizzle-only run never
imports the alembic adapter's dependencies (alembic, SQLAlchemy). This module imports nothing of spec.py
(spec.py asks it for the tools' options).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic import options as alembic
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import options as drizzle

TOOLS = (
    alembic,
    drizzle,
)


def tool_names():
    """The tool names (``choices`` of the service key ``tool``), in registry order."""
    return tuple(tool.TOOL for tool in TOOLS)


def tool_options():
    """The options modules, in registry order (their keys are documented and checked in this order)."""
    return tuple(TOOLS)


def _tool(name):
    for tool in TOOLS:
        if tool.TOOL == name:
            return tool
    return None


def get_adapter(spec, dburl):
    """The adapter for ``spec['tool']``, built from a validated spec and its DbUrl. ValueError for an unknown tool."""
    tool = _tool(spec.get('tool'))
    if tool is None:
        raise ValueError('service %r: unknown tool %r (known: %s)'
                         % (spec.get('name'), spec.get('tool'), ', '.join(tool_names())))
    return tool.adapter_class()(spec, dburl)


def missing_library(tools):
    """``(library, ImportError)`` for the first of ``tools`` (names) whose Python library cannot be imported on
    this host, for the module's ``missing_required_lib`` failure; None when all can be used."""
    for name in tools:
        tool = _tool(name)
        missing = tool.missing_library() if hasattr(tool, 'missing_library') else None
        if missing:
            return missing
    return None
