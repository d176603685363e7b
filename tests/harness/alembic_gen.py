"""Alembic projects and histories for the tests and benchmarks, made by the REAL alembic.

Every revision file is written by alembic itself: ``alembic init``, ``alembic revision`` and
``alembic merge`` run as CLI commands; for long histories :meth:`AlembicProject.bulk_linear` calls
``alembic.command.revision`` in-process (the same code the CLI runs, without paying the interpreter
start-up 500 times). Afterwards the generated ``upgrade()``/``downgrade()`` bodies are filled in so
each revision creates/drops a table of its own, which makes schemas comparable.

The project's env.py (service code, as a real service would have) takes the database URL from
``DATABASE_URL`` and reads a few test knobs from the ``[alembic]`` section of the ini:
``homelab.version_table``, ``homelab.version_table_schema``, ``homelab.transaction_per_migration``.
"""

import os
import re
import subprocess
import sys

VENV_BIN = os.path.dirname(sys.executable)
ALEMBIC = os.path.join(VENV_BIN, 'alembic')

ENV_PY = '''\
import os
from logging.config import fileConfig

from sqlalchemy import create_engine, pool

from alembic import context

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = None


def _opts():
    opts = {}
    table = config.get_main_option("homelab.version_table")
    if table:
        opts["version_table"] = table
    schema = config.get_main_option("homelab.version_table_schema")
    if schema:
        opts["version_table_schema"] = schema
    if config.get_main_option("homelab.transaction_per_migration") == "true":
        opts["transaction_per_migration"] = True
    return opts


def _url():
    # like many services: accept postgres:// and postgresql:// and use the psycopg2 driver
    url = os.environ["DATABASE_URL"]
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg2://" + url[len(scheme):]
    return url


def run_migrations_offline():
    context.configure(url=_url() if os.environ.get("DATABASE_URL") else "postgresql://", literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, **_opts())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **_opts())
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

_UPGRADE_PASS = '    """Upgrade schema."""\n    pass\n'
_DOWNGRADE_PASS = '    """Downgrade schema."""\n    pass\n'
_REV_LINE = re.compile(r'^(?:Rev: )?(?:.*?-> )?([^\s,]+)')


class AlembicCliError(RuntimeError):
    pass


def table_body(rev):
    """upgrade/downgrade bodies that create/drop a table named after the revision."""
    name = 't_%s' % re.sub(r'[^a-z0-9_]', '_', rev.lower())
    up = ('    op.create_table(%r, sa.Column("id", sa.Integer, primary_key=True), '
          'sa.Column("note", sa.Text))\n' % name)
    down = '    op.drop_table(%r)\n' % name
    return up, down


class AlembicProject:
    """A service directory with an alembic.ini and a script directory."""

    def __init__(self, root, ini='alembic.ini', script_dir='alembic'):
        self.root = str(root)
        self.ini = ini
        self.script_dir = script_dir

    # ------------------------------------------------------------------ set-up
    @classmethod
    def init(cls, root, script_dir='alembic', template='generic', version_table=None, version_table_schema=None,
             transaction_per_migration=False, ini_extra=None):
        root = str(root)
        os.makedirs(root, exist_ok=True)
        proj = cls(root, script_dir=script_dir)
        proj.cli('init', '-t', template, script_dir, ini=False)
        with open(os.path.join(root, script_dir, 'env.py'), 'w') as fh:
            fh.write(ENV_PY)
        extra = dict(ini_extra or {})
        if version_table:
            extra['homelab.version_table'] = version_table
        if version_table_schema:
            extra['homelab.version_table_schema'] = version_table_schema
        if transaction_per_migration:
            extra['homelab.transaction_per_migration'] = 'true'
        if extra:
            proj.set_ini(extra)
        return proj

    @property
    def ini_path(self):
        return os.path.join(self.root, self.ini)

    @property
    def versions(self):
        return os.path.join(self.root, self.script_dir, 'versions')

    def set_ini(self, options):
        """Set (or, with value None, remove) options in the [alembic] section, keeping the rest."""
        with open(self.ini_path) as fh:
            lines = fh.read().splitlines()
        start = lines.index('[alembic]') + 1
        end = start
        while end < len(lines) and not lines[end].startswith('['):
            end += 1
        section = lines[start:end]
        for key, value in options.items():
            section = [ln for ln in section if not re.match(r'^%s\s*=' % re.escape(key), ln)]
            if value is not None:
                section.insert(0, '%s = %s' % (key, value))
        lines[start:end] = section
        with open(self.ini_path, 'w') as fh:
            fh.write('\n'.join(lines) + '\n')

    # -------------------------------------------------------------------- CLI
    def env(self, url=None):
        env = dict(os.environ)
        env.pop('ALEMBIC_CONFIG', None)
        env['PATH'] = VENV_BIN + os.pathsep + env.get('PATH', '')
        if url:
            env['DATABASE_URL'] = url
        else:
            env.pop('DATABASE_URL', None)
        return env

    def cli(self, *args, url=None, ini=True, check=True, timeout=300):
        argv = [ALEMBIC] + (['-c', self.ini] if ini else []) + list(args)
        proc = subprocess.run(argv, cwd=self.root, env=self.env(url), check=False, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AlembicCliError('%s failed (%s):\n%s\n%s' % (' '.join(args), proc.returncode, proc.stdout,
                                                               proc.stderr))
        return proc

    @staticmethod
    def _ids(text):
        out = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith(('INFO', 'WARN')):
                continue
            m = _REV_LINE.match(line)
            if m:
                out.append(m.group(1))
        return out

    def heads(self):
        """Revision ids as `alembic heads` prints them, in its order."""
        return self._ids(self.cli('heads').stdout)

    def history(self):
        """Revision ids as `alembic history` prints them (newest first)."""
        return self._ids(self.cli('history').stdout)

    def current(self, url):
        return self._ids(self.cli('current', url=url).stdout)

    def upgrade(self, target, url, check=True):
        return self.cli('upgrade', target, url=url, check=check)

    def downgrade(self, target, url, check=True):
        return self.cli('downgrade', target, url=url, check=check)

    def upgrade_sql(self, rng):
        return self.cli('upgrade', rng, '--sql').stdout

    # -------------------------------------------------------------- revisions
    def _new_file(self, before):
        after = self.files()
        new = sorted(set(after) - set(before))
        assert len(new) == 1, new
        return new[0]

    def files(self):
        out = []
        for root, _dirs, files in os.walk(os.path.join(self.root, self.script_dir)):
            for name in files:
                if name.endswith('.py') and name != 'env.py':
                    out.append(os.path.join(root, name))
        return out

    def revision(self, message, rev_id, head=None, splice=False, branch_label=None, depends_on=None,
                 version_path=None, body=True):
        """`alembic revision` via the CLI; returns the new file's path."""
        args = ['revision', '-m', message, '--rev-id', rev_id]
        if head:
            args += ['--head', head]
        if splice:
            args.append('--splice')
        if branch_label:
            args += ['--branch-label', branch_label]
        for dep in ([depends_on] if isinstance(depends_on, str) else depends_on or []):
            args += ['--depends-on', dep]
        if version_path:
            args += ['--version-path', version_path]
        before = self.files()
        self.cli(*args)
        path = self._new_file(before)
        if body:
            self.fill_body(path, rev_id)
        return path

    def merge(self, revs, message, rev_id, branch_label=None, body=True):
        """`alembic merge` via the CLI; returns the new file's path."""
        args = ['merge', '-m', message, '--rev-id', rev_id]
        if branch_label:
            args += ['--branch-label', branch_label]
        before = self.files()
        self.cli(*(args + list(revs)))
        path = self._new_file(before)
        if body:
            self.fill_body(path, rev_id)
        return path

    def bulk_linear(self, count, prefix='r', start_head='head', body=True, width=5):
        """``count`` linear revisions through alembic's own ScriptDirectory.generate_revision, in-process.

        This is the code `alembic revision` runs, with one ScriptDirectory kept across calls (the CLI
        reloads every revision file per call, which makes 500+ revisions take minutes).
        """
        import contextlib
        import io

        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config(self.ini_path, stdout=io.StringIO())
        script_dir = ScriptDirectory.from_config(cfg)
        ids = []
        head = start_head
        for i in range(count):
            rev_id = '%s%0*d' % (prefix, width, i + 1)
            with contextlib.redirect_stdout(io.StringIO()):  # alembic's "Generating ... done"
                script = script_dir.generate_revision(rev_id, 'step %d' % (i + 1), head=head)
            if body:
                self.fill_body(script.path, rev_id)
            ids.append(rev_id)
            head = rev_id
        return ids

    @staticmethod
    def fill_body(path, rev_id, upgrade=None, downgrade=None):
        up, down = table_body(rev_id)
        with open(path) as fh:
            text = fh.read()
        text = text.replace(_UPGRADE_PASS, '    """Upgrade schema."""\n' + (upgrade if upgrade is not None else up))
        text = text.replace(_DOWNGRADE_PASS,
                            '    """Downgrade schema."""\n' + (downgrade if downgrade is not None else down))
        with open(path, 'w') as fh:
            fh.write(text)

    def file_of(self, rev_id):
        for path in self.files():
            with open(path) as fh:
                if re.search(r'^revision: str = %r$' % rev_id, fh.read(), re.M):
                    return path
        raise KeyError(rev_id)

    def edit(self, rev_id, upgrade=None, downgrade=None, prepend=None):
        """Replace a revision's upgrade()/downgrade() bodies (indented code) or prepend module code."""
        path = self.file_of(rev_id)
        with open(path) as fh:
            text = fh.read()
        if upgrade is not None:
            text = re.sub(r'(def upgrade\(\) -> None:\n    """Upgrade schema."""\n)(.*?)(?=\n\ndef )',
                          lambda m: m.group(1) + upgrade.rstrip('\n'), text, flags=re.S)
        if downgrade is not None:
            text = re.sub(r'(def downgrade\(\) -> None:\n    """Downgrade schema."""\n)(.*)$',
                          lambda m: m.group(1) + downgrade, text, flags=re.S)
        if prepend is not None:
            text = prepend + text
        with open(path, 'w') as fh:
            fh.write(text)
        return path


_RAN_RE = re.compile(r'Running (upgrade|downgrade) (.*?) -> ([^\s,]*)')


def ran(text):
    """Revision ids alembic ran, in order, from its log (stderr) or `--sql` output ("-- Running ...")."""
    return [m.group(3) if m.group(1) == 'upgrade' else m.group(2) for m in _RAN_RE.finditer(text)]


def build_linear(root, count, prefix='r', **init_kw):
    """``count`` revisions r1..rN made one by one with `alembic revision` (the CLI)."""
    proj = AlembicProject.init(root, **init_kw)
    for i in range(1, count + 1):
        proj.revision('step %d' % i, '%s%d' % (prefix, i))
    return proj


def build_branchy(root, **init_kw):
    r"""A history with a branch point, a merge, a second base with a branch label and a dependency.

    ::

        a1 -> a2 -> a3 -------> m1 -> a4        (m1 merges a3 and b2)
               \-> b1 -> b2 --/
        c1 (label "aux", a base of its own) -> c2 (depends_on a2)

    Heads: a4 and c2.
    """
    proj = AlembicProject.init(root, **init_kw)
    proj.revision('a1 base', 'a1')
    proj.revision('a2', 'a2')
    proj.revision('a3', 'a3', head='a2')
    proj.revision('b1 branch', 'b1', head='a2', splice=True)
    proj.revision('b2', 'b2', head='b1')
    proj.merge(['a3', 'b2'], 'merge a3 b2', 'm1')
    proj.revision('a4', 'a4', head='m1')
    proj.revision('c1 aux base', 'c1', head='base', branch_label='aux')
    proj.revision('c2 aux', 'c2', head='aux@head', depends_on='a2')
    return proj


def main(argv=None):
    """Make a project for a benchmark: ``python tests/harness/alembic_gen.py DIR (--linear N | --branchy)``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument('directory')
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--linear', type=int, metavar='N', help='N linear revisions (in-process generate_revision)')
    group.add_argument('--branchy', action='store_true', help='the branch/merge/label/depends_on history')
    args = parser.parse_args(argv)
    start = time.monotonic()
    if args.branchy:
        proj = build_branchy(args.directory)
    else:
        proj = AlembicProject.init(args.directory)
        proj.bulk_linear(args.linear)
    sys.stdout.write('%s: %d revision files in %.1fs\n' % (proj.root, len(proj.files()), time.monotonic() - start))


if __name__ == '__main__':
    main()
