"""Real alembic's ScriptDirectory on a service directory, as the oracle for real projects' histories.

    python alembic_oracle.py SERVICE_DIR POSITIONS_JSON [TARGETS_JSON]  ->  JSON on stdout

ScriptDirectory imports every revision file. The corpus trees come from projects' wheels whose own
packages (``dagster``, ``open_webui``, ``prefect``...) are not installed here, so, in this child process
only, each top-level package a revision file imports that cannot be found is an empty stand-in module
whose attributes are inert objects: enough for the module-level code of a revision file to load, while
the revision identifiers (plain literals in these files) and the whole revision logic are alembic's own.
The answers: ``heads`` (as `alembic heads` lists them), ``history`` (oldest first), and for each position
(a list of version table rows) what `alembic current` prints, the revisions `alembic upgrade heads` runs
from it, in order, and the
revisions `alembic downgrade <position>` runs from all heads, in order; for each target, what
`alembic upgrade <target>` runs from an empty database (or the name of the error alembic raises).
"""

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import types


class _Inert(object):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Inert()

    def __mro_entries__(self, bases):
        return (object,)

    def __iter__(self):
        return iter(())


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Inert()


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, name, path, target=None):
        if name.split('.')[0] not in self.roots:
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def _tolerant_loader(original):
    """alembic's load_python_file, and when a revision file's module-level code fails on a stand-in (a model
    class built from the application's enum, say) after all: the file executed statement by statement, the
    failing statements that bind none of the revision names left out."""
    names = {'revision', 'down_revision', 'branch_labels', 'depends_on'}

    def load(dir_, filename):
        try:
            return original(dir_, filename)
        except Exception:
            path = os.path.join(dir_, filename)
            with open(path, 'rb') as fh:
                tree = ast.parse(fh.read(), path)
            module = types.ModuleType('_oracle_' + filename[:-3].replace('.', '_'))
            module.__file__ = path
            for stmt in tree.body:
                code = compile(ast.Module(body=[stmt], type_ignores=[]), path, 'exec')
                try:
                    exec(code, module.__dict__)  # pylint: disable=exec-used
                except Exception:
                    bound = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                    if bound & names:
                        raise
            return module
    return load


def missing_roots(folder):
    roots = set()
    for name in os.listdir(folder):
        if not name.endswith('.py'):
            continue
        with open(os.path.join(folder, name), 'rb') as fh:
            tree = ast.parse(fh.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots.update(a.name.split('.')[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots.add(node.module.split('.')[0])
    return sorted(r for r in roots if importlib.util.find_spec(r) is None)


def main(argv):
    root, positions = argv[0], json.loads(argv[1])
    targets = json.loads(argv[2]) if len(argv) > 2 else []
    os.chdir(root)
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.script import base as script_base

    script_base.util.load_python_file = _tolerant_loader(script_base.util.load_python_file)

    cfg = Config(os.path.join(root, 'alembic.ini'))
    script_location = cfg.get_main_option('script_location')
    sys.meta_path.append(_StandInFinder(missing_roots(os.path.join(root, script_location, 'versions'))))
    script = ScriptDirectory.from_config(cfg)
    heads = list(script.get_heads())
    history = [s.revision for s in script.walk_revisions()][::-1]
    out = {'heads': heads, 'history': history, 'upgrade': [], 'downgrade': [], 'current': [], 'targets': {}}
    for target in targets:  # what `alembic upgrade <target>` runs from an empty database, or the error's class
        try:
            out['targets'][target] = [step.revision.revision for step in script._upgrade_revs(target, ())]
        except Exception as exc:
            out['targets'][target] = type(exc).__name__
    for rows in positions:
        up = script._upgrade_revs('heads', tuple(rows))
        out['upgrade'].append([step.revision.revision for step in up])
        # what `alembic current` prints for these version table rows
        out['current'].append(sorted(s.revision for s in script.get_all_current(tuple(rows))))
        down = script._downgrade_revs(','.join(rows) if rows else 'base', tuple(heads))
        out['downgrade'].append([step.revision.revision for step in down])
    json.dump(out, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
