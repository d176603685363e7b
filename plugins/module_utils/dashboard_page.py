# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``monitoring/index.html``: one self-contained page (no external script, font or style).

The page fetches ``api/migrations/status`` and ``api/migrations/runs`` relative to the directory above
``monitoring/`` and renders them with DOM text nodes only (``textContent``, never ``innerHTML``), so a
database error holding markup is shown as text. Its Content-Security-Policy allows only its own inline
script and style (by hash) and requests to its own origin.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib

STYLE = r'''
:root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #6e7781; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
.notice { padding: .45rem .7rem; border-radius: 4px; margin: .4rem 0; border: 1px solid; }
.notice.warn { border-color: var(--warn); }
.notice.bad { border-color: var(--bad); }
#overall { font-size: 1.1rem; font-weight: 600; }
.meta { color: var(--muted); margin: .2rem 0; }
.service { border: 1px solid #8c959f66; border-left-width: 6px; border-radius: 4px; padding: .7rem 1rem;
           margin: 1rem 0; }
.service[data-status="up_to_date"] { border-left-color: var(--ok); }
.service[data-status="pending"] { border-left-color: var(--warn); }
.service[data-status="error"] { border-left-color: var(--bad); }
.badge { display: inline-block; font-size: .85rem; font-weight: 700; letter-spacing: .03em; padding: 0 .45rem;
         border: 1px solid currentColor; border-radius: 3px; margin-left: .4rem; vertical-align: middle; }
.st-up_to_date { color: var(--ok); } .st-pending { color: var(--warn); } .st-error { color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .2rem .6rem .2rem 0; }
.kv th { width: 11rem; font-weight: 600; }
.runs th, .runs td, .findings th, .findings td { border-bottom: 1px solid #8c959f44; padding: .25rem .5rem; }
.runs, .findings { table-layout: auto; }
.runs td, .findings td, .kv td { overflow-wrap: anywhere; }
.runs td.mono { white-space: nowrap; font-size: .8em; }
ul { margin: 0; padding-left: 1.2rem; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
              overflow-wrap: anywhere; }
.none { color: var(--muted); }
footer { color: var(--muted); margin-top: 2rem; font-size: .9rem; }
'''

SCRIPT = r'''
(function () {
  'use strict';
  // a day at most: a longer setTimeout delay overflows to 0 and the page would fetch without a pause
  var MAX_SECONDS = 86400;
  function metaInt(name, dflt) {
    var m = document.querySelector('meta[name="' + name + '"]');
    var v = m ? parseInt(m.getAttribute('content'), 10) : NaN;
    return v > 0 ? v : dflt;
  }
  var query = new URLSearchParams(window.location.search);
  var asked = parseInt(query.get('refresh'), 10);
  var REFRESH = Math.min(MAX_SECONDS, asked > 0 ? asked : metaInt('homelab-refresh-seconds', 30));
  var STALE_AFTER = metaInt('homelab-stale-after-seconds', 900);
  // the directory the dashboard was published to: the page lives in its monitoring/ folder
  var ROOT = window.location.pathname.replace(/monitoring(\/(index\.html)?)?$/, '');
  var STATUS_URL = ROOT + 'api/migrations/status';
  var RUNS_URL = ROOT + 'api/migrations/runs';
  var LABEL = {up_to_date: 'UP TO DATE', pending: 'PENDING', error: 'ERROR'};
  var SYMBOL = {up_to_date: '\u2714', pending: '\u25cf', error: '\u2716'};
  var state = {status: null, runs: null, statusError: null, runsError: null, checked: null};
  var shown = {status: null, runs: null};

  function $(id) { return document.getElementById(id); }
  // every value reaches the page as a text node: markup in a database error stays text
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'class') { node.className = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
    return node;
  }
  function show(node, text) { node.textContent = text || ''; node.hidden = !text; }
  function str(v, dflt) { return (v === null || v === undefined || v === '') ? dflt : String(v); }
  function statusLabel(s) { return (SYMBOL[s] || '?') + ' ' + (LABEL[s] || String(s || 'unknown').toUpperCase()); }
  function none(text) { return el('span', {'class': 'none'}, [text || 'none']); }
  function list(items, render) {
    if (!items || !items.length) { return none(); }
    return el('ul', {}, items.map(function (item) { return el('li', {}, [render ? render(item) : String(item)]); }));
  }
  function row(field, label, value) {
    return el('tr', {'data-field': field}, [el('th', {scope: 'row'}, [label]), el('td', {}, [value])]);
  }
  // seconds since an ISO time (negative: in the future); null when it is not a time
  function age(iso) {
    var t = typeof iso === 'string' ? Date.parse(iso) : NaN;
    return isNaN(t) ? null : (Date.now() - t) / 1000;
  }
  function ago(seconds) {
    if (seconds === null) { return 'unknown age'; }
    if (seconds < 0) { return 'in the future by ' + ago(-seconds).replace(' ago', ''); }
    if (seconds < 90) { return Math.round(seconds) + ' s ago'; }
    if (seconds < 5400) { return Math.round(seconds / 60) + ' min ago'; }
    return (seconds / 3600).toFixed(1) + ' h ago';
  }
  function lockText(lock) {
    if (!lock || !lock.held) { return 'free'; }
    var h = lock.holder || {};
    return 'LOCKED by pid ' + str(h.pid, '?') + ' (' + str(h.application_name, 'no application_name') + ', ' +
      str(h.client_addr, 'unknown client') + ')' + (h.since ? ' since ' + h.since : '');
  }
  function healthText(health) {
    if (health === null || health === undefined) { return null; }
    if (typeof health !== 'object') { return String(health); }
    var word = health.state || health.status ||
      (health.verified === true ? 'verified' : (health.verified === false ? 'unverified' : 'unknown'));
    var parts = [String(word).toUpperCase()];
    if (health.reason || health.message) { parts.push(String(health.reason || health.message)); }
    if (health.http_status) { parts.push('HTTP ' + health.http_status); }
    if (health.checked_at || health.since) { parts.push('(' + (health.checked_at || health.since) + ')'); }
    return parts.join(' \u2014 ');
  }
  function findingsTable(findings) {
    if (!findings.length) { return none(); }
    var head = el('tr', {}, ['Severity', 'Code', 'Migration', 'Message', 'Source'].map(function (h) {
      return el('th', {scope: 'col'}, [h]);
    }));
    var body = findings.map(function (f) {
      return el('tr', {'data-severity': str(f.severity, '')}, [
        el('td', {}, [str(f.severity, '?').toUpperCase()]), el('td', {'class': 'mono'}, [str(f.code, '')]),
        el('td', {'class': 'mono'}, [str(f.migration, '')]),
        el('td', {}, [str(f.message, ''), f.statement ? el('div', {'class': 'mono'}, [f.statement]) : null]),
        el('td', {}, [str(f.source, '')])]);
    });
    return el('table', {'class': 'findings'}, [el('thead', {}, [head]), el('tbody', {}, body)]);
  }
  function serviceSection(name, s) {
    var status = s.status || 'unknown';
    var pending = s.pending || 0;
    var rows = [
      row('tool', 'Tool', str(s.tool, 'unknown')),
      row('status', 'Status', el('span', {'class': 'st-' + status}, [statusLabel(status)])),
      row('revision', 'Revision', el('span', {'class': 'mono'}, [
        str(s.current_revision, '(none)') + ' \u2192 ' + str(s.latest_revision, '(none)')])),
      row('counts', 'Migrations', str(s.applied, 0) + ' applied, ' + pending + ' pending'),
      row('pending_migrations', 'Pending', list(s.pending_migrations, function (p) {
        return el('code', {}, [p]);
      })),
      row('problems', 'Problems', list(s.problems, function (p) {
        return el('span', {}, [el('code', {}, ['[' + str(p.code, 'problem') + ']']), ' ', str(p.message, '')]);
      })),
      row('lock', 'Lock', lockText(s.lock))
    ];
    if (s.health !== undefined && s.health !== null) { rows.push(row('health', 'Health', healthText(s.health))); }
    if (Array.isArray(s.findings)) { rows.push(row('findings', 'Findings', findingsTable(s.findings))); }
    if (s.lint && typeof s.lint === 'object') {
      rows.push(row('lint', 'Lint', str(s.lint.linter, 'linter') + ': ' + (s.lint.ran ? 'ran' :
        'not run' + (s.lint.reason ? ' (' + s.lint.reason + ')' : ''))));
    }
    var locked = s.lock && s.lock.held;
    return el('section', {'class': 'service', 'data-service': name, 'data-status': status,
                          'data-locked': locked ? 'true' : 'false'}, [
      el('h2', {}, [name, el('span', {'class': 'badge st-' + status}, [statusLabel(status)]),
                    locked ? el('span', {'class': 'badge st-pending'}, ['LOCKED']) : null]),
      el('table', {'class': 'kv'}, [el('tbody', {}, rows)])
    ]);
  }
  function renderStatus() {
    var doc = state.status;
    var box = $('services');
    if (!doc) { return; }
    var names = Object.keys(doc.services || {});
    box.replaceChildren.apply(box, names.length ? names.map(function (n) {
      return serviceSection(n, doc.services[n] || {});
    }) : [el('p', {'class': 'none'}, ['No services are configured.'])]);
    var overall = doc.overall_status || 'error';
    var o = $('overall');
    o.setAttribute('data-status', overall);
    o.replaceChildren(el('span', {'class': 'st-' + overall}, ['Overall: ' + statusLabel(overall)]),
                      ' \u2014 ' + (doc.total_pending || 0) + ' migration(s) pending in ' + names.length +
                      ' service(s)');
    document.title = (LABEL[overall] || overall) + ' \u2014 homelab migrations';
    $('version').textContent = doc.collection_version ? 'homelab.migrations ' + doc.collection_version : '';
  }
  function renderRuns() {
    var doc = state.runs;
    var box = $('runs');
    if (!doc) { return; }
    var runs = doc.runs || [];
    if (!runs.length) {
      box.replaceChildren(el('p', {'class': 'none'}, ['No runs recorded yet' +
        (doc.audit_log ? '.' : ' (no audit log configured).')]));
      return;
    }
    var head = el('tr', {}, ['Time', 'Run', 'Action', 'Outcome', 'Confirmed by', 'Services'].map(function (h) {
      return el('th', {scope: 'col'}, [h]);
    }));
    var body = runs.map(function (r) {
      var services = (r.services || []).map(function (s) {
        var move = (s.from || s.to) ? ' (' + str(s.from, '(none)') + ' \u2192 ' + str(s.to, '(none)') + ')' : '';
        return s.name + ': ' + str(s.outcome, '?').toUpperCase() + move +
          (s.error ? ' \u2014 ' + s.error : (s.reason ? ' \u2014 ' + s.reason : ''));
      });
      if (r.error) { services.push('refused: ' + r.error); }
      return el('tr', {'data-run': str(r.run_id, ''), 'data-outcome': str(r.outcome, '')}, [
        el('td', {}, [str(r.time, '?')]), el('td', {'class': 'mono'}, [str(r.run_id, '')]),
        el('td', {}, [str(r.action, '?')]), el('td', {}, [str(r.outcome, '?').toUpperCase()]),
        el('td', {}, [str(r.confirmation, r.outcome === 'refused' ? 'none' : 'not needed') +
          (r.user ? ' (' + r.user + ')' : '')]),
        el('td', {}, [list(services)])]);
    });
    box.replaceChildren(el('table', {'class': 'runs'}, [el('thead', {}, [head]), el('tbody', {}, body)]));
  }
  function renderNotices() {
    var doc = state.status;
    var when = doc && doc.generated_at;
    var seconds = when ? age(when) : null;
    $('data-time').textContent = doc ? 'Data from ' + str(when, 'an unknown time') + ' (' + ago(seconds) +
      '); last checked ' +
      (state.checked ? state.checked.toLocaleTimeString() : 'never') + '; refreshes every ' + REFRESH + ' s.' :
      'No status data yet.';
    $('data-time').setAttribute('data-generated-at', typeof when === 'string' ? when : '');
    // data whose age cannot be told is not shown as fresh: no time, a time that is not one, or one in the future
    // (a clock ahead would keep stale data looking fresh)
    var staleText = '';
    if (doc && seconds === null) {
      staleText = 'STALE DATA? The status has no readable time (generated_at: ' + str(when, 'missing') +
        '), so its age is unknown. Is the file written by this collection?';
    } else if (seconds !== null && seconds < -300) {
      staleText = 'DATA TIME IN THE FUTURE: the status says it was written ' + ago(seconds) +
        ' (a clock is wrong); it cannot be told whether it is stale.';
    } else if (seconds !== null && seconds > STALE_AFTER) {
      staleText = 'STALE DATA: the status is ' + ago(seconds).replace(' ago', '') + ' old (expected a new one at ' +
        'least every ' + STALE_AFTER + ' s). Is the status timer or the playbook run failing?';
    }
    show($('stale'), staleText);
    var errors = [];
    if (state.statusError) { errors.push('the status (' + state.statusError + ')'); }
    if (state.runsError) { errors.push('the recent runs (' + state.runsError + ')'); }
    show($('fetch-error'), errors.length ? 'FETCH FAILED at ' + (state.checked || new Date()).toLocaleTimeString() +
      ': could not load ' + errors.join(' and ') + '. ' +
      (doc ? 'Showing the last data loaded.' : 'No data to show yet.') + ' Retrying every ' + REFRESH + ' s.' : '');
  }
  function getJSON(url) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, Math.max(1000, Math.min(10000, REFRESH * 1000)));
    return fetch(url, {cache: 'no-store', credentials: 'same-origin', signal: ctl.signal}).then(function (r) {
      if (!r.ok) { throw new Error('HTTP ' + r.status); }
      return r.json();
    }).then(function (data) {
      if (!data || typeof data !== 'object') { throw new Error('not a JSON object'); }
      return data;
    }).finally(function () { clearTimeout(timer); });
  }
  function why(err) { return err && err.name === 'AbortError' ? 'timed out' : String((err && err.message) || err); }
  function tick() {
    Promise.all([
      getJSON(STATUS_URL).then(function (d) { state.status = d; state.statusError = null; },
                               function (e) { state.statusError = why(e); }),
      getJSON(RUNS_URL).then(function (d) { state.runs = d; state.runsError = null; },
                             function (e) { state.runsError = why(e); })
    ]).then(function () {
      state.checked = new Date();
      // a document that cannot be shown (not what this collection writes) is a failed fetch: the page keeps
      // the last one it showed, with that one's time, never the new time beside the old rows
      try { renderStatus(); shown.status = state.status; } catch (e) {
        state.status = shown.status;
        state.statusError = 'it could not be shown: ' + why(e);
      }
      try { renderRuns(); shown.runs = state.runs; } catch (e) {
        state.runs = shown.runs;
        state.runsError = 'they could not be shown: ' + why(e);
      }
      renderNotices();
      document.body.setAttribute('data-ticks', String(parseInt(document.body.getAttribute('data-ticks') || '0',
                                                              10) + 1));
      setTimeout(tick, REFRESH * 1000);
    });
  }
  $('refresh').textContent = String(REFRESH);
  setInterval(renderNotices, 5000);
  tick();
}());
'''

PAGE = '''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src 'self'; \
script-src '{script_hash}'; style-src '{style_hash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<meta name="homelab-refresh-seconds" content="{refresh}">
<meta name="homelab-stale-after-seconds" content="{stale_after}">
<title>homelab migrations</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>Database migrations</h1>
<p id="overall" role="status">Loading the status&hellip;</p>
<p id="data-time" class="meta"></p>
<p id="stale" class="notice warn" role="alert" hidden></p>
<p id="fetch-error" class="notice bad" role="alert" hidden></p>
<noscript><p class="notice warn">This page needs JavaScript. The data is at
<a href="../api/migrations/status">api/migrations/status</a> and
<a href="../api/migrations/runs">api/migrations/runs</a>.</p></noscript>
</header>
<main>
<div id="services"></div>
<section id="recent-runs"><h2>Recent runs</h2><div id="runs"><p class="none">Loading&hellip;</p></div></section>
</main>
<footer>Written by the homelab.migrations migrate_all role. Refreshes every <span id="refresh">{refresh}</span> s.
<span id="version"></span></footer>
<script>{script}</script>
</body>
</html>
'''


def csp_hash(text):
    return 'sha256-' + base64.b64encode(hashlib.sha256(text.encode('utf-8')).digest()).decode('ascii')


def render_page(refresh=30, stale_after=900):
    """The page, with the refresh interval and stale-data age (seconds) in its meta tags."""
    return PAGE.format(refresh=int(refresh), stale_after=int(stale_after), style=STYLE, script=SCRIPT,
                       style_hash=csp_hash(STYLE), script_hash=csp_hash(SCRIPT))
