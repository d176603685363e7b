"""A throwaway PostgreSQL cluster for the molecule scenario (and anyone else who needs one).

    pgctl.py start STATE            start a cluster on a free port (as the postgres OS user when root)
    pgctl.py createdbs STATE DB...  (re)create empty databases
    pgctl.py stop STATE             stop the cluster and remove its directory

STATE is a JSON file with host, port, bindir and the cluster directory. The cluster is the test
harness's (tests/harness/pg.py): trust auth for the superuser ``postgres`` on 127.0.0.1.
"""

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tests'))

from harness.pg import PgServer, _as_postgres  # noqa: E402


def load(state):
    with open(state) as fh:
        return json.load(fh)


def start(state):
    if os.path.exists(state):
        info = load(state)
        if os.path.exists(os.path.join(info['datadir'], 'postmaster.pid')):
            print('already running on port %s' % info['port'])
            return 0
    server = PgServer()
    server.start()
    server.setup_roles()
    info = {'host': server.host, 'port': server.port, 'bindir': server.bindir, 'tmp': server.tmp,
            'datadir': server.datadir, 'user': 'postgres'}
    os.makedirs(os.path.dirname(os.path.abspath(state)), exist_ok=True)
    with open(state, 'w') as fh:
        json.dump(info, fh)
    print('started PostgreSQL on %s:%s (%s)' % (server.host, server.port, server.tmp))
    return 0


def createdbs(state, names):
    import psycopg2
    info = load(state)
    conn = psycopg2.connect(host=info['host'], port=info['port'], user='postgres', dbname='postgres')
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in names:
            cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name.replace('"', '""'))
            cur.execute('CREATE DATABASE "%s"' % name.replace('"', '""'))
    conn.close()
    print('created %s' % ', '.join(names))
    return 0


def stop(state):
    if not os.path.exists(state):
        print('nothing to stop')
        return 0
    info = load(state)
    if os.path.exists(os.path.join(info['datadir'], 'postmaster.pid')):
        subprocess.run(_as_postgres() + [os.path.join(info['bindir'], 'pg_ctl'), '-D', info['datadir'], '-m', 'fast',
                                         '-w', 'stop'], check=False, cwd='/', timeout=120)
    shutil.rmtree(info['tmp'], ignore_errors=True)
    os.unlink(state)
    print('stopped and removed %s' % info['tmp'])
    return 0


def main(argv):
    if len(argv) < 3 or argv[1] not in ('start', 'createdbs', 'stop'):
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == 'start':
        return start(argv[2])
    if argv[1] == 'createdbs':
        return createdbs(argv[2], argv[3:])
    return stop(argv[2])


if __name__ == '__main__':
    sys.exit(main(sys.argv))
