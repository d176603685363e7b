"""The status dashboard files (module_utils/publish.py, dashboard_page.py): shapes, bounds, atomicity, no secrets."""

import json
import os
import re
import stat

import pytest

from harness.ansible import REPO

from ansible_collections.homelab.migrations.plugins.module_utils import dashboard_page, publish

SECRET = 'Cnry5ecret@:/%?'


def _status():
    return {
        'changed': False, 'success': False, 'overall_status': 'error', 'total_pending': 3,
        'services': {
            'dashboard': {
                'status': 'pending', 'tool': 'alembic', 'current_revision': '004', 'latest_revision': '006',
                'applied': 4, 'pending': 2, 'pending_migrations': ['005', '006'], 'problems': [],
                'lock': {'held': True, 'holder': {'pid': 7, 'application_name': 'homelab-migrations',
                                                  'client_addr': 'local', 'since': '2026-11-30T09:00:00+00:00',
                                                  'query': 'SELECT secret'}},
                'plan': {'applied': ['005', '006'], 'database_url': 'postgresql://u:%s@h/db' % SECRET},
                'findings': [{'migration': '005', 'code': 'not_in_transaction', 'severity': 'error',
                              'message': 'CONCURRENTLY in a transaction', 'statement': 'CREATE INDEX CONCURRENTLY i',
                              'source': 'homelab', 'extra': {'database_url': 'postgresql://u:x@h/db'}}],
                'lint': {'linter': 'squawk', 'ran': False, 'reason': 'squawk is not installed', 'argv': ['x']},
                'health': {'state': 'unverified', 'reason': 'timed out', 'url': 'http://admin:%s@h/health' % SECRET,
                           'headers': {'Authorization': 'Bearer x'}},
            },
            'discord-bot': {
                'status': 'error', 'tool': 'drizzle', 'current_revision': None, 'latest_revision': '0002_x',
                'applied': 0, 'pending': 1, 'pending_migrations': ['0002_x'],
                'problems': [{'code': 'unreachable',
                              'message': 'could not connect to postgresql://homelab:%s@db/x <b>' % SECRET}],
                'lock': {'held': False, 'holder': None},
                'database_url': 'postgresql://homelab:%s@db/x' % SECRET,
            },
        },
    }


def test_collection_version_is_galaxy_yml_version():
    with open(os.path.join(REPO, 'galaxy.yml')) as fh:
        version = re.search(r'^version:\s*(\S+)', fh.read(), re.M).group(1)
    assert publish.COLLECTION_VERSION == version


def test_status_document_is_the_guide_shape_plus_time_version_findings_health():
    doc = publish.status_document(_status(), generated_at='2026-11-30T09:00:00+00:00')
    assert doc['success'] is False and doc['overall_status'] == 'error' and doc['total_pending'] == 3
    assert doc['generated_at'] == '2026-11-30T09:00:00+00:00'
    assert doc['collection_version'] == publish.COLLECTION_VERSION
    dash = doc['services']['dashboard']
    assert set(dash) == set(publish.report_mod.STATUS_KEYS) | {'findings', 'lint', 'health'}
    assert dash['pending_migrations'] == ['005', '006'] and dash['current_revision'] == '004'
    assert dash['lock'] == {'held': True, 'holder': {'pid': 7, 'application_name': 'homelab-migrations',
                                                     'client_addr': 'local', 'since': '2026-11-30T09:00:00+00:00'}}
    assert dash['findings'] == [{'migration': '005', 'code': 'not_in_transaction', 'severity': 'error',
                                 'message': 'CONCURRENTLY in a transaction',
                                 'statement': 'CREATE INDEX CONCURRENTLY i', 'source': 'homelab'}]
    assert dash['health']['state'] == 'unverified' and 'headers' not in dash['health']
    assert dash['lint'] == {'linter': 'squawk', 'ran': False, 'reason': 'squawk is not installed'}
    bot = doc['services']['discord-bot']
    assert set(bot) == set(publish.report_mod.STATUS_KEYS) - {'health'}  # no health where the status has none
    assert bot['findings'] == [] and bot.get('lint') is None
    text = json.dumps(doc)
    assert 'Cnry5ecret' not in text and 'plan' not in text and 'database_url' not in text
    assert bot['problems'][0]['message'].endswith('<b>')  # text kept as text: the page escapes it


def test_a_password_cut_in_half_is_masked_first():
    status = _status()
    prefix = 'x' * (publish.MAX_TEXT - len(' postgresql://homelab:') - 5)  # the cut falls inside the password
    status['services']['discord-bot']['problems'][0]['message'] = prefix + ' postgresql://homelab:%s@db/x' % SECRET
    text = json.dumps(publish.status_document(status))
    assert 'Cnry5' not in text and 'Cnr' not in text.replace('homelab:********', '')
    record = _record('r', 'dashboard', 'failed', '2026-11-30T08:00:00+00:00',
                     error=prefix + ' postgresql://homelab:%s@db/x' % SECRET)
    assert 'Cnr' not in json.dumps(publish.runs_document([record]))


def test_long_texts_are_cut():
    status = _status()
    status['services']['discord-bot']['problems'][0]['message'] = 'x' * 50000
    doc = publish.status_document(status)
    message = doc['services']['discord-bot']['problems'][0]['message']
    assert len(message) < publish.MAX_TEXT + 100 and message.endswith('[48000 more characters]')


def _record(run_id, service, outcome, time, **more):
    record = {'time': time, 'host': 'ctl', 'user': 'alice', 'service': service, 'action': 'apply', 'from': 'a',
              'to': 'b', 'outcome': outcome, 'error': None, 'confirmation': 'prompt', 'run_id': run_id,
              'source': 'role', 'backup': '/var/backups/x.dump'}
    record.update(more)
    return record


def test_runs_group_by_run_id_newest_first_and_bounded():
    records = []
    for i in range(30):
        t = '2026-11-30T08:%02d:00.000+00:00' % i
        records.append(_record('run-%02d' % i, 'dashboard', 'success', t))
        records.append(_record('run-%02d' % i, 'stream-bot', 'failed' if i == 29 else 'unchanged', t,
                               error='boom postgresql://u:%s@h/d' % SECRET))
        records.append({'time': t, 'service': 'dashboard', 'action': 'apply', 'outcome': 'success'})  # module step
    records.append(_record('run-refused', None, 'refused', '2026-11-30T09:00:00.000+00:00', confirmation=None,
                           error='stream-bot has changes pending and the run was not confirmed'))
    doc = publish.runs_document(records, limit=5)
    runs = doc['runs']
    assert [r['run_id'] for r in runs] == ['run-refused', 'run-29', 'run-28', 'run-27', 'run-26']
    assert runs[0]['outcome'] == 'refused' and runs[0]['services'] == [] and 'not confirmed' in runs[0]['error']
    assert runs[1]['outcome'] == 'failed' and runs[2]['outcome'] == 'success'
    assert runs[2]['confirmation'] == 'prompt' and runs[2]['user'] == 'alice'
    assert runs[2]['services'][0] == {'name': 'dashboard', 'outcome': 'success', 'from': 'a', 'to': 'b',
                                      'error': None}
    text = json.dumps(doc)
    assert 'Cnry5ecret' not in text and '/var/backups' not in text
    assert publish.runs_document(records, limit=100000)['limit'] == publish.MAX_RUNS


def test_audit_tail_reads_only_the_end(tmp_path):
    log = tmp_path / 'audit.log'
    with open(log, 'w') as fh:
        for i in range(5000):
            fh.write(json.dumps(_record('run-%04d' % i, 'dashboard', 'success', '2026-11-30T08:00:00+00:00',
                                        pad='p' * 200)) + '\n')
        fh.write('not json\n')
    records, bad = publish.read_audit_tail(str(log), max_bytes=100000)
    assert bad == 1 and 150 < len(records) < 250  # ~480 bytes a line
    assert records[-1]['run_id'] == 'run-4999'
    assert publish.read_audit_tail(str(tmp_path / 'missing.log')) == ([], 0)
    os.symlink(str(log), str(tmp_path / 'link.log'))
    with pytest.raises(publish.DashboardError, match='symbolic link'):
        publish.read_audit_tail(str(tmp_path / 'link.log'))


def _files(root):
    found = []
    for base, _dirs, files in os.walk(root):
        found.extend(os.path.relpath(os.path.join(base, f), root) for f in files)
    return sorted(found)


def test_publish_writes_three_files_atomically_readable_by_a_web_server(tmp_path):
    log = tmp_path / 'audit.log'
    log.write_text(json.dumps(_record('r1', 'dashboard', 'success', '2026-11-30T08:00:00+00:00')) + '\n')
    root = tmp_path / 'www' / 'migrations'
    old = os.umask(0o077)
    try:
        written = publish.publish(str(root), _status(), str(log), refresh=7, stale_after=60, runs=3)
    finally:
        os.umask(old)
    assert _files(str(root)) == ['api/migrations/runs', 'api/migrations/status', 'monitoring/index.html']
    for rel in ('', 'api', 'api/migrations', 'monitoring'):
        assert stat.S_IMODE(os.stat(os.path.join(str(root), rel)).st_mode) == 0o755, rel
    for rel in publish.FILES:
        assert stat.S_IMODE(os.stat(os.path.join(str(root), rel)).st_mode) == 0o644, rel
    assert written['status'] == str(root / 'api/migrations/status')
    assert json.loads((root / 'api/migrations/runs').read_text())['runs'][0]['run_id'] == 'r1'
    page = (root / 'monitoring/index.html').read_text()
    assert '<meta name="homelab-refresh-seconds" content="7">' in page
    assert '<meta name="homelab-stale-after-seconds" content="60">' in page
    for path in _files(str(root)):
        assert 'Cnry5ecret' not in (root / path).read_text()

    # without a status, the status document stays as it was; the runs and the page are rewritten
    before = (root / 'api/migrations/status').read_text()
    log.write_text(log.read_text() + json.dumps(_record('r2', None, 'refused', '2026-11-30T08:05:00+00:00')) + '\n')
    written = publish.publish(str(root), None, str(log))
    assert written['status'] is None and (root / 'api/migrations/status').read_text() == before
    assert json.loads((root / 'api/migrations/runs').read_text())['runs'][0]['run_id'] == 'r2'
    assert _files(str(root)) == ['api/migrations/runs', 'api/migrations/status', 'monitoring/index.html']


def test_publish_refuses_a_symlinked_folder_and_bad_intervals(tmp_path):
    root = tmp_path / 'www'
    (tmp_path / 'elsewhere').mkdir()
    root.mkdir()
    os.symlink(str(tmp_path / 'elsewhere'), str(root / 'api'))
    with pytest.raises(publish.DashboardError, match='symbolic link'):
        publish.publish(str(root), _status())
    assert os.listdir(str(tmp_path / 'elsewhere')) == []
    with pytest.raises(publish.DashboardError, match='at least 1 second'):
        publish.publish(str(tmp_path / 'w2'), _status(), refresh=0)


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """Every write goes through a temp file and a rename: the inode of the file changes, no temp file is left."""
    root = tmp_path / 'w'
    publish.publish(str(root), _status())
    inode = os.stat(str(root / 'api/migrations/status')).st_ino
    publish.publish(str(root), _status())
    assert os.stat(str(root / 'api/migrations/status')).st_ino != inode
    assert not [f for f in _files(str(root)) if '.tmp' in f]


def test_page_is_self_contained_and_escapes_everything():
    page = dashboard_page.render_page(30, 900)
    # no URL to anywhere: no scheme, no protocol-relative link, no @import, no src= attribute
    assert not re.search(r'(?i)\b(?:https?|wss?|ftp):', page)
    assert '//' not in re.sub(r'(?m)^\s*//.*$', '', dashboard_page.SCRIPT)  # only comment lines hold //
    assert not re.search(r'(?i)src\s*=|@import|url\(', page)
    # the CSP allows exactly the page's own script and style
    csp = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "'%s'" % dashboard_page.csp_hash(dashboard_page.SCRIPT) in csp
    assert "'%s'" % dashboard_page.csp_hash(dashboard_page.STYLE) in csp
    assert '<script>%s</script>' % dashboard_page.SCRIPT in page
    # data reach the page only as text
    for sink in ('innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function'):
        assert sink not in dashboard_page.SCRIPT, sink


def _hang_guard(seconds):
    """Turn a hang into a failure (SIGALRM raises in the test's thread)."""
    import signal

    def _raise(*_):
        raise AssertionError('still publishing after %d s: the step would hang on this audit log' % seconds)
    signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)


def test_a_huge_audit_log_of_tiny_runs_and_services_publishes_quickly_and_bounded(tmp_path):
    """Red team: 4 MB of one-line runs (each a new run_id) and of one run with thousands of services made the
    runs document quadratic (minutes to hours); a run's service list was unbounded."""
    import signal
    import time
    log = tmp_path / 'audit.log'
    with open(log, 'w') as fh:
        i = 0
        while fh.tell() < publish.AUDIT_TAIL_BYTES // 2:
            fh.write('{"run_id":"r%d","time":"2026-11-30T08:00:00+00:00"}\n' % i)
            i += 1
        while fh.tell() < publish.AUDIT_TAIL_BYTES + 1000:
            fh.write('{"run_id":"big","service":"s%d","outcome":"success","time":"2026-11-30T09:00:00+00:00"}\n' % i)
            i += 1
    started = time.monotonic()
    _hang_guard(60)
    try:
        written = publish.publish(str(tmp_path / 'www'), audit_log=str(log), runs=publish.MAX_RUNS)
    finally:
        signal.alarm(0)
    assert time.monotonic() - started < 30
    doc = json.loads(open(written['runs']).read())
    assert doc['runs'][0]['run_id'] == 'big' and doc['runs'][0]['outcome'] == 'success'
    assert len(doc['runs'][0]['services']) == publish.MAX_LIST and doc['runs'][0]['services_omitted'] > 1000
    assert len(doc['runs']) == publish.MAX_RUNS
    assert os.path.getsize(written['runs']) < 2 * 1024 * 1024


def test_a_corrupt_audit_log_is_counted_not_fatal(tmp_path):
    """Red team: a line nested deeper than the JSON parser's recursion limit raised RecursionError (the publish
    step crashed); a run id longer than its shown cut made the runs document raise."""
    log = tmp_path / 'audit.log'
    long_id = 'run-' + 'x' * 300
    with open(log, 'w') as fh:
        fh.write(json.dumps(_record(long_id, 'dashboard', 'success', '2026-11-30T08:00:00+00:00')) + '\n')
        fh.write('[' * 200000 + '\n')
        fh.write('{"a": ' * 100000 + '\n')
        fh.write('\xff\xfe not utf-8 \x00\n')
        fh.write(json.dumps(_record('run-2', 'dashboard', 'failed', '2026-11-30T08:01:00+00:00')) + '\n')
    written = publish.publish(str(tmp_path / 'www'), audit_log=str(log))
    doc = json.loads(open(written['runs']).read())
    assert [r['outcome'] for r in doc['runs']] == ['failed', 'success']
    assert doc['runs'][1]['run_id'].startswith('run-xxx') and len(doc['runs'][1]['run_id']) < 200
    assert doc['unreadable_lines'] == written['unreadable_lines'] == 3


def test_an_http_url_query_is_never_published():
    """Red team: a health check URL's ?token= in an old audit record or a problem message (no known secret at
    publish time) is cut from every published text."""
    error = 'health check https://mon:pw@dash.lan/healthz?access_token=TknQ9x&x=1#TknF did not answer 2xx'
    doc = publish.runs_document([_record('run-1', 'dashboard', 'failed', '2026-11-30T08:00:00+00:00',
                                         error=error)])
    text = json.dumps(doc)
    assert 'TknQ9x' not in text and 'TknF' not in text and ':pw@' not in text
    assert 'https://mon:********@dash.lan/healthz?********' in doc['runs'][0]['services'][0]['error']
    status = _status()
    status['services']['dashboard']['problems'] = [{'code': 'x', 'message': error}]
    assert 'TknQ9x' not in json.dumps(publish.status_document(status))


def test_an_audit_log_others_can_write_is_not_published(tmp_path):
    """Red team: an audit log anyone can write (0666), or another user's, let any local user add a forged
    'success' run that the dashboard showed as ours."""
    log = tmp_path / 'audit.log'
    log.write_text(json.dumps(_record('forged', 'dashboard', 'success', '2026-11-30T08:00:00+00:00')) + '\n')
    os.chmod(str(log), 0o666)
    with pytest.raises(publish.DashboardError, match='writable by others'):
        publish.publish(str(tmp_path / 'www'), audit_log=str(log))
    os.chmod(str(log), 0o640)
    if os.geteuid() == 0:
        os.chown(str(log), 65534, 65534)
        with pytest.raises(publish.DashboardError, match='belongs to another user'):
            publish.read_audit_tail(str(log))
        os.chown(str(log), 0, 0)
    assert publish.read_audit_tail(str(log))[0][0]['run_id'] == 'forged'
