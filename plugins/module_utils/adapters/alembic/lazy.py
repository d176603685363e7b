# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""alembic's revision machinery, imported on first use and without alembic's command runtime.

A module that never reads an Alembic service (a drizzle-only status or apply) never pays for importing
alembic and SQLAlchemy: nothing here imports alembic until :func:`load` runs. Afterwards the names below
are alembic's own classes (``alembic.script.revision`` and ``alembic.runtime.migration``, alembic 1.x);
read them as attributes of this module (``lazy.RevisionMap``), since :func:`load` rebinds them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gc
import os
import sys

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError

HeadMaintainer = Revision = RevisionError = RevisionMap = RevisionStep = MultipleHeads = None
_ALEMBIC = {}  # 'error': the ImportError, or None once loaded
_ALEMBIC_MODULES = ('alembic.script.revision', 'alembic.runtime.migration')


def import_light():
    """The modules of _ALEMBIC_MODULES, imported without the parts of alembic the read side never runs.

    ``import alembic`` loads alembic's whole command runtime (``alembic.context``, ``alembic.op`` and its
    operations, every DDL dialect, the autogenerate plugins, Mako and Pygments for the revision
    templates): about 0.15 s, half of a status run, for nothing the read side uses. The revision map and
    the version-table bookkeeping (``HeadMaintainer``, ``RevisionStep``) need none of it, so while the two
    modules load, the package ``__init__`` files of ``alembic`` and ``alembic.script``, ``alembic.ddl``
    (used only when a MigrationContext connects) and Mako (used only to render new revision files) are
    bare stand-ins. Afterwards every module loaded that way and every stand-in leaves sys.modules again:
    this adapter keeps a private copy, and a later ``import alembic`` in the same process gets the real,
    complete package. When alembic is imported already, or the stand-ins do not work with the installed
    alembic, the plain import is used instead.
    """
    import importlib
    if 'alembic' in sys.modules:
        return [importlib.import_module(name) for name in _ALEMBIC_MODULES]
    import importlib.util
    import types
    found = importlib.util.find_spec('alembic')
    if found is None or not found.submodule_search_locations:
        raise ImportError("No module named 'alembic'")
    base = list(found.submodule_search_locations)[0]
    stand_ins = [('alembic', base), ('alembic.script', os.path.join(base, 'script')),
                 ('alembic.ddl', os.path.join(base, 'ddl'))]
    if 'mako' not in sys.modules:
        stand_ins += [('mako', None), ('mako.exceptions', None), ('mako.template', None)]
    placed = {}
    before = set(sys.modules)
    try:
        for name, where in stand_ins:
            module = types.ModuleType(name)
            if where is not None:
                module.__path__ = [where]
            sys.modules[name] = placed[name] = module
        if 'mako.template' in placed:
            placed['mako.template'].Template = None  # alembic renders new revision files with it: never here
        modules = [importlib.import_module(name) for name in _ALEMBIC_MODULES]
        ok = True
    except Exception:  # a layout this does not know: forget the partial load, import alembic the plain way
        ok = False
    for name in set(sys.modules) - before:
        if name.split('.')[0] == 'alembic' or placed.get(name) is sys.modules[name]:
            del sys.modules[name]
    if not ok:
        return [importlib.import_module(name) for name in _ALEMBIC_MODULES]
    return modules


def load():
    """Import alembic's revision machinery once; returns the ImportError, or None when it is loaded.

    The import makes some 60,000 objects (SQLAlchemy's and alembic's modules, classes, functions, caches) that
    live as long as the process (a module run; the controller never loads alembic). So the cyclic garbage
    collector pauses meanwhile (enabled again afterwards if it was), and then moves every object there is to its
    permanent generation (``gc.freeze()``): later collections, and the ones at interpreter exit, no longer walk
    them (together about 20 ms of CPU of a 0.25 s apply run). Reference counting frees objects as before;
    only garbage in reference cycles among the frozen objects is kept until exit (about 20 objects are such
    garbage right after the import)."""
    global HeadMaintainer, Revision, RevisionError, RevisionMap, RevisionStep, MultipleHeads
    if 'error' not in _ALEMBIC:
        collecting = gc.isenabled()
        gc.disable()
        try:
            revision, migration = import_light()
            HeadMaintainer, RevisionStep = migration.HeadMaintainer, migration.RevisionStep
            Revision, RevisionError, RevisionMap = revision.Revision, revision.RevisionError, revision.RevisionMap
            MultipleHeads = revision.MultipleHeads
            _ALEMBIC['error'] = None
            gc.freeze()
        except ImportError as exc:
            _ALEMBIC['error'] = exc
        finally:
            if collecting:
                gc.enable()
    return _ALEMBIC['error']


def alembic_import_error():
    """None when alembic can be used on this host, else the ImportError (imports alembic on first call)."""
    return load()


def require_alembic():
    """Load alembic's revision machinery; AdapterError (with what to install) when it is missing."""
    error = load()
    if error is not None:
        raise AdapterError('the Python library alembic is required on the managed host to read migration state '
                           '(pip install alembic): %s' % error)
