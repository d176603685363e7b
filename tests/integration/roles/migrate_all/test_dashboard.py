"""The status dashboard (migrate_all_dashboard_dir), published by the real role and read by a real browser.

One example homelab (real PostgreSQL, real alembic and drizzle services) is put in the four states the page
must show: a real run takes everything to head (a run for api/migrations/runs); then the dashboard service
is moved back to 004 (pending) while another session holds its migration lock (locked), stream-bot stays at
head (up_to_date), and discord-bot points at a database that does not exist and whose name is markup (error,
with PostgreSQL's own error text holding `<img ...>`). `playbooks/migrate.yml --check` publishes the
dashboard; the browser tests serve the directory on 127.0.0.1 and drive Debian's headless Chromium through
Selenium (skipped with the reason when chromium, chromium-driver or selenium is missing).
"""

import datetime
import json
import os
import shutil
import stat
import time
import urllib.request

import pytest

from harness import browser as browser_mod
from harness.ansible import run_module
from integration.roles.migrate_all.test_role import BOTS, Homelab

from ansible_collections.homelab.migrations.plugins.module_utils import lock as lock_mod
from ansible_collections.homelab.migrations.plugins.module_utils import publish

pytestmark = pytest.mark.peer

FILES = ('api/migrations/status', 'api/migrations/runs', 'monitoring/index.html')
MARKUP_DB = '<img src=x onerror=alert(1)>'
MARKUP_DB_URL = '%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E'
REFRESH = 1
LABEL = {'up_to_date': 'UP TO DATE', 'pending': 'PENDING', 'error': 'ERROR'}


@pytest.fixture(scope='module')
def lab(pg, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('dashboard')
    homelab = Homelab(pg, tmp)
    homelab.dashboard_dir = str(tmp / 'www' / 'migrations')
    more = {'migrate_all_dashboard_dir': homelab.dashboard_dir, 'migrate_all_dashboard_refresh': REFRESH}
    try:
        homelab.first = homelab.play(**more)
        assert homelab.first.returncode == 0, homelab.first.stdout[-3000:]
        homelab.runs_after_run = _read(homelab.dashboard_dir, 'api/migrations/runs')
        homelab.move('dashboard', '004')
        other_run = homelab.dbs['dashboard'].conn()
        try:
            lock_mod.acquire(other_run, 'dashboard', wait_seconds=0)
            homelab.holder_pid = other_run.get_backend_pid()
            homelab.check = homelab.play(check=True, homelab_demo_db_discord_bot=MARKUP_DB_URL, **more)
        finally:
            other_run.close()
        yield homelab
    finally:
        homelab.drop()


def _read(root, rel):
    with open(os.path.join(root, rel)) as fh:
        return json.load(fh)


def test_check_mode_publishes_the_status_in_the_guides_shape(lab):
    # check mode fails at the end because discord-bot cannot be planned; the dashboard is written before
    assert lab.check.returncode != 0 and 'cannot be planned' in lab.check.stdout
    doc = _read(lab.dashboard_dir, 'api/migrations/status')
    assert doc['success'] is False and doc['overall_status'] == 'error' and doc['total_pending'] >= 2
    assert doc['collection_version'] == publish.COLLECTION_VERSION
    made = datetime.datetime.fromisoformat(doc['generated_at'])
    assert made.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - made).total_seconds()) < 600
    services = doc['services']
    assert sorted(services) == ['dashboard', 'discord-bot', 'stream-bot']

    dash = services['dashboard']
    assert (dash['status'], dash['tool'], dash['current_revision'], dash['latest_revision']) == \
        ('pending', 'alembic', '004', '006')
    assert (dash['applied'], dash['pending'], dash['pending_migrations']) == (4, 2, ['005', '006'])
    assert dash['lock']['held'] is True and dash['lock']['holder']['pid'] == lab.holder_pid
    assert [p['code'] for p in dash['problems']] == ['locked']

    bot = services['stream-bot']
    tags = BOTS['stream-bot']
    assert (bot['status'], bot['tool'], bot['current_revision'], bot['latest_revision']) == \
        ('up_to_date', 'drizzle', tags[-1], tags[-1])
    assert (bot['applied'], bot['pending'], bot['pending_migrations'], bot['problems']) == (len(tags), 0, [], [])
    assert bot['lock'] == {'held': False, 'holder': None}

    broken = services['discord-bot']
    assert broken['status'] == 'error' and broken['problems'][0]['code'] == 'unreachable'
    assert MARKUP_DB in broken['problems'][0]['message']  # PostgreSQL's own error text, markup and all

    # the same values as the status module's own answer (but the lock, released meanwhile, and the linter's
    # state, which the role's planned status adds)
    specs = [lab.spec(name) for name in ('dashboard', 'stream-bot')]
    result, proc = run_module('homelab_migration_status', {'services': specs})
    assert not result.get('failed'), proc.stdout[-2000:]
    for name in ('dashboard', 'stream-bot'):
        for key in publish.report_mod.STATUS_KEYS:
            if key not in ('lock', 'problems', 'lint') and key in result['services'][name]:
                assert services[name][key] == result['services'][name][key], (name, key)


def test_the_runs_document_lists_the_real_run(lab):
    runs = lab.runs_after_run['runs']
    assert len(runs) == 1
    run = runs[0]
    assert run['action'] == 'apply' and run['outcome'] == 'success' and run['confirmation'] == 'migrate_all_confirm'
    assert run['run_id'] == lab.role_records()[0]['run_id'] and run['user']
    assert [(s['name'], s['outcome'], s['from'], s['to']) for s in run['services']] == [
        ('dashboard', 'success', None, '006'), ('stream-bot', 'success', None, BOTS['stream-bot'][-1]),
        ('discord-bot', 'success', None, BOTS['discord-bot'][-1])]
    # check mode adds no run, but rewrites the document
    assert _read(lab.dashboard_dir, 'api/migrations/runs')['runs'] == runs


def test_published_files_are_world_readable_and_hold_no_secret(lab):
    password = lab.pg.password
    for rel in FILES:
        path = os.path.join(lab.dashboard_dir, rel)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        with open(path, 'rb') as fh:
            data = fh.read().decode('utf-8')
        for needle in (lab.canary, password, password[:16]):
            assert needle not in data, (rel, 'the database password reached the dashboard')
        for db in lab.dbs.values():
            assert db.password_url not in data and db.url not in data
    assert sorted(os.listdir(os.path.join(lab.dashboard_dir, 'api', 'migrations'))) == ['runs', 'status']


def test_a_refused_run_is_published_with_its_reason(pg, tmp_path):
    homelab = Homelab(pg, tmp_path)
    dash = str(tmp_path / 'www')
    try:
        proc = homelab.play(confirm=False, timeout=120, migrate_all_dashboard_dir=dash)
    finally:
        homelab.drop()
    assert proc.returncode != 0 and 'not confirmed' in proc.stdout
    runs = _read(dash, 'api/migrations/runs')['runs']
    assert len(runs) == 1 and runs[0]['outcome'] == 'refused' and runs[0]['confirmation'] == 'none'
    assert 'not confirmed' in runs[0]['error'] and runs[0]['run_id'] == homelab.audit()[0]['run_id']
    status = _read(dash, 'api/migrations/status')
    assert status['overall_status'] == 'pending' and status['total_pending'] == 6 + 5 + 3


def test_a_health_check_token_in_the_url_reaches_no_published_file(pg, tmp_path):
    """Red team: a health check URL carrying its credential in the query (``?token=``, the way many services
    take one) failed the health check with the whole URL in the message, which went to the play output, the
    audit record and the published runs document."""
    import threading
    import uuid
    from http.server import HTTPServer
    from integration.roles.migrate_all.test_role import _Unhealthy
    homelab = Homelab(pg, tmp_path)
    dash = str(tmp_path / 'www')
    token = 'Tkn%s' % uuid.uuid4().hex[:12]
    server = HTTPServer(('127.0.0.1', 0), _Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/health?probe=1&access_token=%s#frag%s' % (server.server_port, token, token)
        services = [homelab.spec('stream-bot'), homelab.spec('discord-bot', health_check=url)]
        homelab.move('stream-bot', BOTS['stream-bot'][-1])
        proc = homelab.play(migrate_all_services=services, migrate_all_health_check_retries=1,
                            migrate_all_health_check_delay=0, migrate_all_dashboard_dir=dash)
    finally:
        server.shutdown()
        server.server_close()
        homelab.drop()
    assert proc.returncode != 0 and 'HTTP 503' in proc.output and '127.0.0.1' in proc.output
    assert token not in proc.output, 'the health check token reached the play output'
    runs = _read(dash, 'api/migrations/runs')['runs']
    assert 'HTTP 503' in json.dumps(runs)
    for path in [homelab.audit_log] + [os.path.join(dash, rel) for rel in FILES]:
        with open(path) as fh:
            assert token not in fh.read(), path


def test_a_role_password_in_a_failing_migration_reaches_no_published_file(pg, tmp_path):
    """Red team: a migration creating a role with PASSWORD '...' that fails (a typo after it) made PostgreSQL
    quote the statement in its error (LINE 1: ...); the error went to the audit record, the runs document and
    the play output with the role's password in it."""
    import uuid
    homelab = Homelab(pg, tmp_path)
    dash = str(tmp_path / 'www')
    secret = 'CnryRole%s' % uuid.uuid4().hex[:10]
    tag = '0005_app_role'
    folder = os.path.join(homelab.services_dir, 'stream-bot', 'migrations')
    with open(os.path.join(folder, 'meta', '_journal.json')) as fh:
        journal = json.load(fh)
    last = journal['entries'][-1]
    journal['entries'].append(dict(last, idx=last['idx'] + 1, when=last['when'] + 60000, tag=tag))
    with open(os.path.join(folder, 'meta', '_journal.json'), 'w') as fh:
        json.dump(journal, fh, indent=2)
    with open(os.path.join(folder, tag + '.sql'), 'w') as fh:
        fh.write("CREATE ROLE \"app_reader_%s\" LOGIN PASSWORD '%s' CONNECTON LIMIT 5;\n" % (secret[-6:], secret))
    try:
        homelab.move('stream-bot', BOTS['stream-bot'][-1])
        proc = homelab.play(tags='stream-bot', migrate_all_dashboard_dir=dash, timeout=300)
        check = homelab.play(check=True, tags='stream-bot', migrate_all_dashboard_dir=dash, timeout=300)
    finally:
        homelab.drop()
    assert proc.returncode != 0 and 'CONNECTON' in proc.output, proc.output[-3000:]
    runs = _read(dash, 'api/migrations/runs')['runs']
    assert runs and 'CONNECTON' in json.dumps(runs), runs
    for name, run in (('apply', proc), ('check', check)):
        assert secret not in run.output, (name, 'the role password reached the play output')
    for path in [homelab.audit_log] + [os.path.join(dash, rel) for rel in FILES]:
        with open(path) as fh:
            assert secret not in fh.read(), path


# ------------------------------------------------------------------------------------------------- browser

@pytest.fixture(scope='module')
def chromium():
    why = browser_mod.missing()
    if why:
        pytest.skip(why)
    with browser_mod.Browser() as browser:
        yield browser


@pytest.fixture
def served(lab, tmp_path):
    """A copy of the published directory (a test may change it) served on 127.0.0.1."""
    root = str(tmp_path / 'site')
    shutil.copytree(lab.dashboard_dir, root)
    with browser_mod.StaticServer(root) as server:
        server.root = root
        yield server


RENDERED = '''
function text(node) { return node ? node.textContent.trim() : null; }
return {
  overall: document.getElementById('overall').getAttribute('data-status'),
  overallText: text(document.getElementById('overall')),
  dataTime: document.getElementById('data-time').getAttribute('data-generated-at'),
  stale: document.getElementById('stale').hidden ? null : text(document.getElementById('stale')),
  fetchError: document.getElementById('fetch-error').hidden ? null : text(document.getElementById('fetch-error')),
  ticks: parseInt(document.body.getAttribute('data-ticks') || '0', 10),
  images: document.querySelectorAll('img').length,
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  services: Array.from(document.querySelectorAll('section.service')).map(function (s) {
    function cell(f) { return text(s.querySelector('tr[data-field="' + f + '"] td')); }
    function items(f) {
      var td = s.querySelector('tr[data-field="' + f + '"] td');
      return td ? Array.from(td.querySelectorAll('li')).map(text) : null;
    }
    return {name: s.getAttribute('data-service'), status: s.getAttribute('data-status'),
            locked: s.getAttribute('data-locked'), heading: text(s.querySelector('h2')), tool: cell('tool'),
            statusText: cell('status'), revision: cell('revision'), counts: cell('counts'),
            pending: items('pending_migrations'), problems: items('problems'), lock: cell('lock'),
            health: cell('health'), findings: cell('findings'), lint: cell('lint'),
            findingRows: Array.from(s.querySelectorAll('tr[data-field="findings"] tbody tr')).map(function (r) {
              return Array.from(r.querySelectorAll('td')).map(text);
            }),
            elementsInFindings: s.querySelectorAll('tr[data-field="findings"] tbody td *:not(div)').length,
            elementsInProblems: s.querySelectorAll('tr[data-field="problems"] li *:not(code):not(span)').length};
  }),
  runs: Array.from(document.querySelectorAll('#runs tr[data-run]')).map(function (r) {
    return {run: r.getAttribute('data-run'), outcome: r.getAttribute('data-outcome'), text: text(r)};
  })
};
'''


def rendered(browser):
    return browser.driver.execute_script(RENDERED)


def wait_for(browser, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    page = None
    while time.monotonic() < deadline:
        page = rendered(browser)
        if predicate(page):
            return page
        time.sleep(0.1)
    raise AssertionError('%s: not within %.1f s; the page shows %r' % (what, timeout, page))


def expected_rows(doc):
    rows = []
    for name, s in doc['services'].items():
        lock = s['lock']
        rows.append({
            'name': name, 'status': s['status'], 'locked': 'true' if lock['held'] else 'false',
            'tool': s['tool'], 'statusText': LABEL[s['status']],
            'revision': '%s \u2192 %s' % (s['current_revision'] or '(none)', s['latest_revision'] or '(none)'),
            'counts': '%d applied, %d pending' % (s['applied'], s['pending']),
            'pending': list(s['pending_migrations']),
            'problems': ['[%s] %s' % (p['code'], p['message']) for p in s['problems']],
            'lock': ('LOCKED by pid %s' % lock['holder']['pid']) if lock['held'] else 'free',
        })
    return rows


def assert_page_shows(page, doc, runs=None):
    assert page['overall'] == doc['overall_status'] and LABEL[doc['overall_status']] in page['overallText']
    assert page['dataTime'] == doc['generated_at']
    want = expected_rows(doc)
    assert [s['name'] for s in page['services']] == [w['name'] for w in want]
    for got, row in zip(page['services'], want):
        assert got['status'] == row['status'] and got['locked'] == row['locked'], got
        assert row['statusText'] in got['statusText'] and row['statusText'] in got['heading'], got
        assert ('LOCKED' in got['heading']) == (row['locked'] == 'true'), got
        assert (got['tool'], got['revision'], got['counts']) == (row['tool'], row['revision'], row['counts']), got
        assert got['pending'] == row['pending'] and got['problems'] == row['problems'], got
        assert got['lock'].startswith(row['lock']), got
        assert got['elementsInProblems'] == 0 and got['elementsInFindings'] == 0, 'markup became elements'
        findings = doc['services'][got['name']].get('findings')
        if findings is None:
            assert got['findings'] is None
        else:
            assert [r[:4] for r in got['findingRows']] == [
                [f['severity'].upper(), f['code'], f.get('migration') or '',
                 f['message'] + (f.get('statement') or '')] for f in findings], got
            assert findings or got['findings'] == 'none'
        health = doc['services'][got['name']].get('health')
        assert (got['health'] is None) == (health is None), got
        if health:
            assert got['health'].startswith(health['state'].upper()) and health['reason'] in got['health']
    assert page['images'] == 0 and page['pwned'] is None
    if runs is not None:
        assert [r['run'] for r in page['runs']] == [r['run_id'] for r in runs['runs']]
        assert [r['outcome'] for r in page['runs']] == [r['outcome'] for r in runs['runs']]


def _fetch(server, rel):
    with urllib.request.urlopen(server.url + '/' + rel, timeout=10) as answer:
        assert answer.headers['Content-Type'].startswith('application/json')
        return json.load(answer)


def _rewrite(server, doc, rel='api/migrations/status'):
    publish.report_mod.write_atomic(os.path.join(server.root, rel), json.dumps(doc).encode('utf-8'))


def test_page_shows_the_example_homelab_as_the_status_json_says(chromium, served):
    doc = _fetch(served, 'api/migrations/status')
    runs = _fetch(served, 'api/migrations/runs')
    assert {s['status'] for s in doc['services'].values()} == {'pending', 'up_to_date', 'error'}
    chromium.driver.get(served.url + '/monitoring/')
    page = wait_for(chromium, lambda p: p['ticks'] >= 1 and p['services'], 20, 'first render')
    assert_page_shows(page, doc, runs)
    by_name = dict((s['name'], s) for s in page['services'])
    # the four states, by text
    assert by_name['dashboard']['statusText'].endswith('PENDING') and by_name['dashboard']['locked'] == 'true'
    assert by_name['stream-bot']['statusText'].endswith('UP TO DATE')
    assert by_name['discord-bot']['statusText'].endswith('ERROR')
    # PostgreSQL's error text with the markup database name, shown as text
    assert MARKUP_DB in by_name['discord-bot']['problems'][0]
    assert page['fetchError'] is None and page['stale'] is None
    assert 'SUCCESS' in page['runs'][0]['text'] and 'migrate_all_confirm' in page['runs'][0]['text']
    # the guide's URL without the trailing slash and the file itself load the same data
    for path in ('/monitoring', '/monitoring/index.html'):
        chromium.driver.get(served.url + path)
        assert_page_shows(wait_for(chromium, lambda p: p['ticks'] >= 1, 20, path), doc, runs)


def test_page_follows_changes_stale_data_failed_fetches_and_markup(chromium, served):
    doc = _fetch(served, 'api/migrations/status')
    chromium.driver.get(served.url + '/monitoring/')
    wait_for(chromium, lambda p: p['ticks'] >= 1 and p['services'], 20, 'first render')

    # the data changes: the page follows within the refresh interval (1 s here; one fetch may be under way)
    changed = json.loads(json.dumps(doc))
    changed['services']['discord-bot'].update(status='up_to_date', problems=[], current_revision='0002_x',
                                              latest_revision='0002_x', pending=0, pending_migrations=[])
    changed['services']['dashboard'].update(lock={'held': False, 'holder': None}, problems=[],
                                            health={'state': 'unverified', 'reason': 'the health check timed out'})
    changed['services']['stream-bot']['findings'] = [
        {'migration': '0005_x', 'statement': 'CREATE INDEX CONCURRENTLY i ON t (a)', 'code': 'not_in_transaction',
         'severity': 'error', 'message': 'CONCURRENTLY cannot run inside a transaction <b>!</b>', 'source': 'homelab'}]
    changed['overall_status'] = 'pending'
    changed['generated_at'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    started = time.monotonic()
    _rewrite(served, changed)
    page = wait_for(chromium, lambda p: p['overall'] == 'pending', REFRESH * 2 + 3, 'the change')
    assert time.monotonic() - started <= REFRESH * 2 + 3
    assert_page_shows(page, changed)

    # a problem message holding markup is text, and its script does not run
    markup = json.loads(json.dumps(changed))
    evil = '<script>window.__pwned=1</script><b>bold</b><img src=x onerror="window.__pwned=2">'
    markup['services']['stream-bot'].update(status='error', problems=[{'code': 'bad_config', 'message': evil}])
    markup['overall_status'] = 'error'
    _rewrite(served, markup)
    page = wait_for(chromium, lambda p: p['overall'] == 'error', REFRESH * 2 + 3, 'the markup message')
    assert_page_shows(page, markup)
    bot = [s for s in page['services'] if s['name'] == 'stream-bot'][0]
    assert bot['problems'] == ['[bad_config] ' + evil]

    # data older than migrate_all_dashboard_stale_after: a warning, in words
    old = json.loads(json.dumps(markup))
    old['generated_at'] = (datetime.datetime.now(datetime.timezone.utc)
                           - datetime.timedelta(hours=2)).isoformat(timespec='seconds')
    _rewrite(served, old)
    page = wait_for(chromium, lambda p: p['stale'], REFRESH * 2 + 3, 'the stale-data warning')
    assert page['stale'].startswith('STALE DATA') and '900 s' in page['stale']

    # a failed fetch: said so, the last data stays on the page, and it recovers
    served.fail['/api/migrations/status'] = 503
    page = wait_for(chromium, lambda p: p['fetchError'], REFRESH * 2 + 3, 'the failed fetch')
    assert 'FETCH FAILED' in page['fetchError'] and 'HTTP 503' in page['fetchError']
    assert 'Showing the last data loaded' in page['fetchError']
    assert_page_shows(page, old)
    del served.fail['/api/migrations/status']
    _rewrite(served, doc)
    page = wait_for(chromium, lambda p: not p['fetchError'] and p['overall'] == doc['overall_status'],
                    REFRESH * 2 + 3, 'recovery')
    assert_page_shows(page, doc)

    # the runs document failing is said too; a server that is gone as well
    served.fail['/api/migrations/runs'] = 404
    page = wait_for(chromium, lambda p: p['fetchError'] and 'recent runs' in p['fetchError'], REFRESH * 2 + 3,
                    'the failed runs fetch')
    assert 'HTTP 404' in page['fetchError'] and 'the status' not in page['fetchError'].split('load ')[1][:10]
    served.stop()
    page = wait_for(chromium, lambda p: p['fetchError'] and 'the status (' in p['fetchError'], 15, 'server gone')
    assert_page_shows(page, doc)


def test_no_request_leaves_127_0_0_1(chromium, served):
    chromium.driver.get(served.url + '/monitoring/')
    wait_for(chromium, lambda p: p['ticks'] >= 3, 20, 'three refreshes')
    urls = chromium.requests()
    assert urls, 'the DevTools network log is empty'
    # every network request (any scheme that reaches a network) went to the loopback server; the rest are the
    # browser's own pages (its new-tab page: chrome://, chrome-untrusted://) and data: URLs, never sent anywhere
    network = [u for u in urls if u.split(':', 1)[0].lower() not in ('chrome', 'chrome-untrusted', 'data', 'about',
                                                                     'blob', 'devtools')]
    assert network and [u for u in network if not u.startswith('http://127.0.0.1:')] == []
    ours = [u for u in urls if u.startswith(served.url)]
    paths = set(u[len(served.url):].split('?')[0] for u in ours)
    assert paths <= {'/monitoring/', '/api/migrations/status', '/api/migrations/runs'}, paths
    assert {client for client, _path in served.log} == {'127.0.0.1'}
    assert {'/monitoring/', '/api/migrations/status', '/api/migrations/runs'} <= {p for _c, p in served.log}
    errors = [e for e in chromium.console() if e.get('level') == 'SEVERE' and 'Content Security Policy' in
              e.get('message', '')]
    assert errors == [], 'the page broke its own Content-Security-Policy'


EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def _evil_status(generated_at):
    """Markup in every value a service, a run and a lock holder can carry (red team)."""
    name = 'svc' + EVIL
    return {'success': True, 'overall_status': 'pending', 'total_pending': 1, 'services': {name: {
        'status': 'pending', 'tool': 'alembic' + EVIL, 'current_revision': 'r1' + EVIL, 'latest_revision': 'r2' + EVIL,
        'applied': 1, 'pending': 1, 'pending_migrations': ['r2' + EVIL],
        'problems': [{'code': 'c' + EVIL, 'message': 'm' + EVIL}],
        'lock': {'held': True, 'holder': {'pid': 7, 'application_name': 'app' + EVIL, 'client_addr': EVIL,
                                          'since': EVIL}},
        'findings': [{'migration': EVIL, 'statement': EVIL, 'code': EVIL, 'severity': 'warning' + EVIL,
                      'message': EVIL, 'source': EVIL}],
        'lint': {'linter': EVIL, 'ran': False, 'reason': EVIL},
        'health': {'state': 'unverified' + EVIL, 'reason': EVIL, 'url': EVIL}}},
        'generated_at': generated_at}


def _evil_records():
    base = {'time': '2026-11-30T08:00:00+00:00', 'action': 'apply' + EVIL, 'user': 'alice' + EVIL,
            'host': EVIL, 'confirmation': 'prompt' + EVIL}
    return [dict(base, run_id='run' + EVIL, service='svc' + EVIL, outcome='failed', error='boom' + EVIL,
                 **{'from': 'r1' + EVIL, 'to': 'r2' + EVIL}),
            dict(base, run_id='refused' + EVIL, outcome='refused', error='no' + EVIL)]


@pytest.fixture
def synthetic(tmp_path):
    """A dashboard published from a synthetic status and audit log (no database), served on 127.0.0.1."""
    root = str(tmp_path / 'site')
    log = tmp_path / 'audit.log'
    log.write_text(''.join(json.dumps(r) + '\n' for r in _evil_records()))
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    publish.publish(root, status=_evil_status(now), audit_log=str(log), refresh=REFRESH)
    with browser_mod.StaticServer(root) as server:
        server.root = root
        yield server


def test_markup_in_every_value_stays_text(chromium, synthetic):
    """Red team: service names, revisions, tags, lock holders, findings, lint, health, run ids, users,
    confirmations, errors holding markup: all shown as text, no element made, no script run."""
    chromium.driver.get(synthetic.url + '/monitoring/')
    page = wait_for(chromium, lambda p: p['ticks'] >= 1 and p['services'] and p['runs'], 20, 'first render')
    assert page['images'] == 0 and page['pwned'] is None
    svc = page['services'][0]
    assert svc['name'] == 'svc' + EVIL and EVIL in svc['heading'] and EVIL in svc['lock'] and EVIL in svc['tool']
    assert svc['revision'] == 'r1%s \u2192 r2%s' % (EVIL, EVIL) and svc['pending'] == ['r2' + EVIL]
    assert svc['problems'] == ['[c%s] m%s' % (EVIL, EVIL)] and EVIL in svc['health'] and EVIL in svc['lint']
    assert svc['elementsInProblems'] == 0 and svc['elementsInFindings'] == 0
    assert [r['run'] for r in page['runs']] == ['refused' + EVIL, 'run' + EVIL]
    assert all(EVIL in r['text'] for r in page['runs'])
    counts = chromium.driver.execute_script(
        'return [document.querySelectorAll("script").length, document.querySelectorAll("img, b, iframe").length]')
    assert counts == [1, 0]


def test_data_of_unknown_or_future_age_is_not_shown_as_fresh(chromium, synthetic):
    """Red team: a status without generated_at, with one that is not a time, or dated in the future (a clock
    ahead) was shown without any warning, as fresh."""
    path = os.path.join(synthetic.root, 'api/migrations/status')
    doc = _read(synthetic.root, 'api/migrations/status')
    chromium.driver.get(synthetic.url + '/monitoring/')
    wait_for(chromium, lambda p: p['ticks'] >= 1 and p['services'] and not p['stale'], 20, 'first render')
    for generated_at, words in ((None, 'STALE DATA?'), ('yesterday', 'STALE DATA?'),
                                ((datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=3))
                                 .isoformat(timespec='seconds'), 'DATA TIME IN THE FUTURE')):
        changed = dict(doc)
        if generated_at is None:
            del changed['generated_at']
        else:
            changed['generated_at'] = generated_at
        publish.report_mod.write_atomic(path, json.dumps(changed).encode('utf-8'))
        page = wait_for(chromium, lambda p, w=words: p['stale'] and w in p['stale'], REFRESH * 2 + 3,
                        repr(generated_at))
        assert page['fetchError'] is None


def test_a_huge_refresh_is_capped_not_a_fetch_loop(chromium, synthetic):
    """Red team: ?refresh=2147484 (or a huge migrate_all_dashboard_refresh) overflowed setTimeout's 32-bit delay
    to 0: the page fetched both documents in a tight loop."""
    chromium.driver.get(synthetic.url + '/monitoring/?refresh=2147484')
    wait_for(chromium, lambda p: p['ticks'] >= 1, 20, 'first render with a huge refresh')
    time.sleep(2)
    assert rendered(chromium)['ticks'] == 1


def test_a_document_that_cannot_be_shown_keeps_the_last_data_and_its_time(chromium, synthetic):
    """Red team: a status the page could not render (a null problem, from a hand-edited or foreign file) left the
    old rows on the page but showed the new document's time beside them, as if they were that fresh."""
    path = os.path.join(synthetic.root, 'api/migrations/status')
    doc = _read(synthetic.root, 'api/migrations/status')
    chromium.driver.get(synthetic.url + '/monitoring/')
    first = wait_for(chromium, lambda p: p['ticks'] >= 1 and p['services'], 20, 'first render')
    assert first['dataTime'] == doc['generated_at'] and first['overall'] == 'pending'
    bad = json.loads(json.dumps(doc))
    bad['generated_at'] = (datetime.datetime.now(datetime.timezone.utc)
                           + datetime.timedelta(seconds=30)).isoformat(timespec='seconds')
    bad['overall_status'] = 'error'
    name = list(bad['services'])[0]
    bad['services'][name]['problems'] = [None]
    publish.report_mod.write_atomic(path, json.dumps(bad).encode('utf-8'))
    page = wait_for(chromium, lambda p: p['fetchError'] and 'could not be shown' in p['fetchError'],
                    REFRESH * 2 + 3, 'the unshowable document')
    assert page['dataTime'] == doc['generated_at'] and page['overall'] == 'pending'
    assert 'Showing the last data loaded' in page['fetchError']
