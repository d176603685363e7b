# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration status after a run (homelab_migration_run's ``status``), mostly without reading it again.

    after = StatusAfter()
    after.note(service, module, module_args, result)      # every module run of the run, in order
    status = after.report(before, results, reread)         # at the end

``before`` is the status module's result read before the run; each service the run moved gets, in its place, the
``status`` entry the last apply on it returned (the apply module's read of the service under its lock, the shape of
one entry of homelab_migration_status's ``services``). A service whose state after the run is not known (a backup
was restored into it, or an apply that may have changed it returned no entry) is read again, those services only,
with ``reread(names)`` (the status module's result for them); so is a service the run did not move whose read
before it was planned with migrations pending (skipped, refused untouched): its findings are the plan's, made with
the run's options, not a plain read's. A successful run reads nothing again. The result has the status module's
shape (success, overall_status, total_pending, services), as a status read with the run's ``audit_log`` (no
``plan``) returns it: each service's ``health`` is the one the read before the run carried, replaced by the last
health record the run wrote for it (``after.health(record)``), so the health state published after a run
is the one the audit log holds now (a check that passed says ``passed``), not the one before it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.module_utils.audit import health_state_of
from ansible_collections.homelab.migrations.plugins.module_utils.health_state import with_health
from ansible_collections.homelab.migrations.plugins.module_utils.status_summary import ERROR, summarize

APPLY = 'homelab_migration_apply'
BACKUP = 'homelab_pg_backup'
STATUS = 'homelab_migration_status'
# what the status before the run has that a read after it does not
BEFORE_ONLY = ('plan',)
HEALTH = 'health'


class StatusAfter(object):
    """What the run's module results say about each service's state after the run."""

    def __init__(self):
        self.known = {}  # name -> the entry after the run, or None when it is not known
        self.checked = {}  # name -> the health state the run's last health record left ({state, since, revision})

    def health(self, record):
        """Keep the health state an audit record the run wrote (as homelab_migration_audit returned it) leaves, by
        the rule the audit log's reader applies (audit.health_state_of); other records leave none."""
        found = health_state_of(record)
        if found:
            self.checked[found[0]] = found[1]

    def note(self, service, module, module_args, result):
        """Keep what one module run (``module`` with ``module_args``, its ``result``) says about ``service``: an
        apply's ``status`` entry is the service's state now; an apply that returned none and may have changed the
        service (not ``untouched``), and a restore (whatever its outcome), leave it unknown. Other modules
        (backups, audit, health) change no migration state."""
        if not service or not isinstance(result, dict):
            return
        if module == APPLY:
            entry = result.get('status')
            if isinstance(entry, dict) and entry.get('status'):
                self.known[service] = _plain(entry)
            elif not result.get('untouched'):
                self.known[service] = None
        elif module == BACKUP and module_args.get('state') == 'restored':
            self.known[service] = None

    def unknown(self, before_services=None):
        """The services whose state after the run must be read again: those left unknown, then those of
        ``before_services`` (the read before the run) that the run did not move and that were planned with
        migrations pending."""
        unknown = [name for name, entry in self.known.items() if entry is None]
        return unknown + [name for name, entry in (before_services or {}).items()
                          if name not in self.known and 'plan' in entry and entry.get('pending')]

    def report(self, before, results, reread):
        """The status after the run. ``results`` {name: outcome fields}: when no service was attempted (none got as
        far as its backup) the run touched nothing and ``before`` is returned as it is. ``reread(names)`` returns
        the status module's result for the unknown services (an entry it lacks is an error entry that says so)."""
        before = before or {}
        if not any((r or {}).get('attempted') for r in (results or {}).values()):
            return self._with_health(before, before) if self.checked else before
        services = dict((name, _plain(entry)) for name, entry in (before.get('services') or {}).items())
        services.update((name, entry) for name, entry in self.known.items() if entry is not None)
        unknown = self.unknown(before.get('services'))
        if unknown:
            read = reread(unknown) or {}
            entries = read.get('services') if not read.get('failed') and isinstance(read.get('services'), dict) else {}
            for name in unknown:
                services[name] = entries.get(name) or _unread(services.get(name) or {}, read.get('msg'))
        return self._with_health(summarize(services), before)

    def _with_health(self, status, before):
        """``status`` with each service's health state: the run's last health record's, else the read before's."""
        services = status.get('services') or {}
        states = dict((name, ((before.get('services') or {}).get(name) or {}).get(HEALTH)) for name in services)
        states.update(self.checked)
        bare = dict((name, dict((k, v) for k, v in entry.items() if k != HEALTH)) for name, entry in services.items())
        return with_health(dict(status, services=bare), states)


def _plain(entry):
    return dict((key, value) for key, value in entry.items() if key not in BEFORE_ONLY)


def _unread(entry, why):
    """An error entry for a service whose state after the run could not be read: nothing of the read before it."""
    message = 'the state after the run could not be read (%s); run the status again' % (why or 'no answer')
    return dict(entry, status=ERROR, current_revision=None, applied=0, pending=0, pending_migrations=[],
                findings=[], lock={'held': False, 'holder': None},
                problems=[{'code': 'unreachable', 'message': message}])


def reread_args(specs, names):
    """The status module's arguments to read ``names`` again: their specs, ``depends_on`` kept to the services
    read (the module refuses a dependency it is not given)."""
    chosen = [spec for spec in specs if spec.get('name') in names]
    return {'services': [dict(spec, depends_on=[d for d in spec.get('depends_on') or [] if d in names])
                         for spec in chosen]}
