# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status report's top-level fields from its service entries (DESIGN.md's dashboard shape).

    report = summarize({'dashboard': entry, ...})

Plain Python with no imports, so that the controller (the homelab_migration_run action, which builds the status
after a run from the apply results) uses it without loading the status read's database code.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

UP_TO_DATE = 'up_to_date'
PENDING = 'pending'
ERROR = 'error'


def summarize(services):
    """``{success, overall_status, total_pending, services}`` from ``services`` {name: entry} (each entry with
    ``status`` up_to_date|pending|error and ``pending`` int): ``overall_status`` is error when any entry is in
    error, else pending when any has pending migrations, else up_to_date; ``services`` is returned as given."""
    statuses = [entry['status'] for entry in services.values()]
    if ERROR in statuses:
        overall = ERROR
    elif PENDING in statuses:
        overall = PENDING
    else:
        overall = UP_TO_DATE
    return {
        'success': overall != ERROR,
        'overall_status': overall,
        'total_pending': sum(entry['pending'] for entry in services.values()),
        'services': services,
    }
