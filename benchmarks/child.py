"""The "ours" side of benchmark rows 2, 4, 5 and 6: one module code path in a fresh interpreter.

    python benchmarks/child.py status|apply|backup PAYLOAD.json

The payload (a 0600 file written by common.code_child) holds the arguments; the answer is one JSON line.
Nothing but the collection is imported here, so the child's time and memory are the code path's own
(interpreter start-up, our imports, the work), as a module run's would be without Ansible's wrapper,
and not the benchmark harness's.
"""

import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, '.build', 'collections'))  # made by common.py before any child runs


def _child_status(payload):
    """The status module's code path: build_report over the payload's service specs."""
    from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults
    from ansible_collections.homelab.migrations.plugins.module_utils.status import build_report
    specs = [service_defaults(s) for s in payload['services']]
    started = time.perf_counter()
    report = build_report(specs)
    elapsed = time.perf_counter() - started
    return {'elapsed': elapsed, 'overall_status': report['overall_status'], 'total_pending': report['total_pending'],
            'services': dict((name, {'status': e['status'], 'current_revision': e['current_revision'],
                                     'latest_revision': e['latest_revision'], 'applied': e['applied'],
                                     'pending': e['pending'], 'problems': e['problems']})
                             for name, e in report['services'].items())}


def _child_apply(payload):
    """The apply module's code path: run_apply for one service to a target."""
    from ansible_collections.homelab.migrations.plugins.module_utils.apply import run_apply
    from ansible_collections.homelab.migrations.plugins.module_utils.spec import service_defaults, validate_service
    spec = service_defaults(payload['service'])
    dburl = validate_service(spec)
    started = time.perf_counter()
    result = run_apply(spec, dburl, payload.get('params') or {})
    elapsed = time.perf_counter() - started
    return {'elapsed': elapsed, 'failed': bool(result.get('failed')), 'msg': result.get('msg'),
            'changed': result.get('changed'), 'applied': len(result.get('applied') or []),
            'to_revision': result.get('to_revision'), 'duration_seconds': result.get('duration_seconds')}


def _child_backup(payload):
    """The backup module's code path: module_utils.backup.entry.run (pg_dump, verify, checksum, publish)."""
    from ansible_collections.homelab.migrations.plugins.module_utils.backup import entry
    started = time.perf_counter()
    result = entry.run(payload['params'])
    elapsed = time.perf_counter() - started
    return {'elapsed': elapsed, 'failed': bool(result.get('failed')), 'msg': result.get('msg'),
            'path': result.get('path'), 'size_bytes': result.get('size_bytes'),
            'duration_seconds': result.get('duration_seconds')}


KINDS = {'status': _child_status, 'apply': _child_apply, 'backup': _child_backup}


def _child_main(argv):
    kind, path = argv
    with open(path) as fh:
        payload = json.load(fh)
    answer = KINDS[kind](payload)
    sys.stdout.write(json.dumps(answer) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(_child_main(sys.argv[1:]))
