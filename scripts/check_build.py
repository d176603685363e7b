"""The build gate: the collection tarball holds only what users need, and stays small.

    python scripts/check_build.py .build/dist/homelab-migrations-*.tar.gz

Fails (exit 1, naming every offending entry) when the tarball has a top-level entry outside ALLOWED,
a development or tool-left file anywhere (tests, caches, hidden directories such as ansible-lint's
.ansible/, node_modules, compiled Python), or is larger than MAX_BYTES. Used by scripts/test.sh and
tests/test_build.py. When you add a top-level folder users need, add it to ALLOWED and to galaxy.yml.
"""

import os
import sys
import tarfile

ALLOWED = {'MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'bindep.txt', 'changelogs', 'docs', 'examples',
           'meta', 'playbooks', 'plugins', 'roles'}
# below these there is nothing users need
FORBIDDEN_PARTS = {'tests', 'benchmarks', 'molecule', 'scripts', '__pycache__', 'node_modules', 'fragments'}
FORBIDDEN_SUFFIXES = ('.pyc', '.pyo', '.tar.gz', '.retry')
MAX_BYTES = 400 * 1024      # about 150 KB today; a second copy of the collection (.ansible/) is about 500 KB


def problems(path, max_bytes=MAX_BYTES):
    found = []
    size = os.path.getsize(path)
    if size > max_bytes:
        found.append('%s is %d bytes, more than the bound of %d' % (path, size, max_bytes))
    with tarfile.open(path) as tar:
        names = [m.name for m in tar.getmembers()]
    for name in sorted(names):
        parts = [p for p in name.split('/') if p not in ('', '.')]
        if not parts:
            continue
        if parts[0] not in ALLOWED:
            found.append('top-level entry not for users: %s' % name)
        elif any(p.startswith('.') for p in parts) or FORBIDDEN_PARTS.intersection(parts[1:]) \
                or name.endswith(FORBIDDEN_SUFFIXES):
            found.append('development or tool-left file: %s' % name)
    for required in ('MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'plugins', 'roles', 'meta'):
        if not any(n == required or n.startswith(required + '/') for n in names):
            found.append('missing: %s' % required)
    return found


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = problems(argv[1])
    for line in found:
        print('build gate: ' + line, file=sys.stderr)
    if found:
        print('build gate: fix galaxy.yml build_ignore (or ALLOWED in scripts/check_build.py)', file=sys.stderr)
        return 1
    print('build gate: %s holds only what users need (%d bytes)' % (argv[1], os.path.getsize(argv[1])))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
