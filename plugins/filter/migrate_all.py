# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrate_all role's filters: a registry. The logic is in plugins/plugin_utils (private to the collection);
each filter is documented in plugins/filter/<name>.yml.

    services | homelab.migrations.migrate_all_order                  names in depends_on order
    order | homelab.migrations.migrate_all_selected(run, skip)       names the --tags/--skip-tags select
    status | homelab.migrations.migrate_all_status_table(order, sel) readable status table (lines)
    status | homelab.migrations.migrate_all_plans(selected)          the status task's plans, in order
    results | homelab.migrations.migrate_all_summary(order)          one readable line per service
    failed | homelab.migrations.migrate_all_refusal(...)             the audit record of a refused run
    text | homelab.migrations.migrate_all_mask(secrets)              every password masked (module_utils.secrets)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.migrations.plugins.plugin_utils import selection, text


class FilterModule(object):
    def filters(self):
        return {
            'migrate_all_order': selection.migrate_all_order,
            'migrate_all_selected': selection.migrate_all_selected,
            'migrate_all_plans': selection.migrate_all_plans,
            'migrate_all_changed': selection.migrate_all_changed,
            'migrate_all_target': selection.migrate_all_target,
            'migrate_all_with_health': selection.migrate_all_with_health,
            'migrate_all_status_table': text.migrate_all_status_table,
            'migrate_all_plan_lines': text.migrate_all_plan_lines,
            'migrate_all_summary': text.migrate_all_summary,
            'migrate_all_failure_message': text.migrate_all_failure_message,
            'migrate_all_refusal': text.migrate_all_refusal,
            'migrate_all_refusal_message': text.migrate_all_refusal_message,
            'migrate_all_mask': text.migrate_all_mask,
        }
