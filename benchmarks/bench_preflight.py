"""Row 8: what the pre-flight checks cost. The example homelab on empty databases (all 14 migrations
pending), `ansible-playbook playbooks/migrate.yml --check` with the pre-flight checks (findings, squawk
lint of the pending drizzle SQL when squawk is installed) against the same run with
`-e migrate_all_preflight=false`.

    rows = run(server, reps=3, quick=False, only=None)
"""

import json
import os
import shutil
import tempfile

import common
from bench_status import INVENTORY, PLAYBOOK, Homelab
from common import BenchError, make_row


def row8_preflight(server, peer, reps, tmp):
    homelab = Homelab(server, peer, state='empty')
    report = os.path.join(tmp, 'status.json')
    try:
        argv = ['-i', INVENTORY, PLAYBOOK, '--check']

        def once(preflight):
            extra = dict(homelab.extra_vars(), migrate_all_preflight=preflight, migrate_all_status_report=report)
            child = common.ansible_playbook(argv, tmp, extra_vars=extra)
            child.check('ansible-playbook playbooks/migrate.yml --check (preflight %s)' % preflight)
            with open(report) as fh:
                services = json.load(fh)['services']
            if sum(s['pending'] for s in services.values()) != 14:
                raise BenchError('expected 14 pending migrations, the status says %s' % services)
            found = dict((name, s.get('findings') or []) for name, s in services.items())
            lint = dict((name, s.get('lint')) for name, s in services.items())
            if not preflight and any(found.values()):
                raise BenchError('findings with migrate_all_preflight=false: %s' % found)
            return child, found, lint

        with_runs, without_runs, found, lint = [], [], None, None
        for i in range(reps):  # interleaved, alternating which goes first
            for preflight in ((True, False) if i % 2 == 0 else (False, True)):
                child, f, li = once(preflight)
                if preflight:
                    with_runs.append(child)
                    found, lint = f, li
                else:
                    without_runs.append(child)
        counts = dict((name, '%d (%s)' % (len(items), ', '.join(sorted(set(
            '%s %s' % (x['severity'], x['code']) for x in items))) or 'none')) for name, items in found.items())
        ran = sorted(name for name, li in lint.items() if li and li.get('ran'))
        notes = ('ours = --check with the pre-flight checks, raw = the same run with migrate_all_preflight=false, '
                 'example homelab on empty databases (14 pending). squawk linted: %s. Findings: %s'
                 % (', '.join(ran) or 'none (%s)' % next((li.get('reason') for li in lint.values()
                                                         if li and li.get('reason')), '?'),
                    '; '.join('%s %s' % kv for kv in sorted(counts.items()))))
        return make_row('8', 'status: --check with pre-flight vs without', with_runs, without_runs, None,
                        notes=notes, extra={'findings': found, 'lint': lint})
    finally:
        homelab.drop()


def run(server, reps=3, quick=False, only=None, log=print):
    only = set(only or ('8',))
    if '8' not in only:
        return []
    tmp = tempfile.mkdtemp(prefix='bench-preflight-')
    try:
        log('[bench] row 8: --check with pre-flight vs without ...')
        return [common.guarded('8', 'status: --check with pre-flight vs without',
                               lambda: row8_preflight(server, common.drizzle_peer(), reps, tmp), log=log)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    with common.pg_server() as srv:
        print(json.dumps(run(srv, reps=1, quick=True), indent=2))
