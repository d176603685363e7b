"""homelab_migration_run's reading of the apply's journal and of the audit log after a module run ended without a
result (plugins/action/homelab_migration_run.py _Journal), over a stand-in transport for ansible.builtin.slurp."""

import base64
import json

from ansible_collections.homelab.migrations.plugins.action.homelab_migration_run import _Journal


class _Action(object):
    def __init__(self, files):
        self.files = files

    def _execute_module(self, module_name, module_args, task_vars):
        assert module_name == 'ansible.builtin.slurp'
        text = self.files.get(module_args['src'])
        if text is None:
            return {'failed': True, 'msg': 'file not found'}
        return {'content': base64.b64encode(text.encode()).decode(), 'encoding': 'base64'}


def test_a_cut_last_line_is_left_out_and_a_cut_line_before_others_distrusts_the_journal():
    start, apply = json.dumps({'step': 'start'}), json.dumps({'step': 'apply'})
    journal = _Journal(_Action({'/j1': start + '\n{"step": "bac', '/j2': start + '\n{"step": "bac' + apply + '\n',
                                '/j3': start + '\n' + apply + '\n'}), {})
    assert journal.read('/j1') == [{'step': 'start'}]
    assert journal.read('/j2') is None
    assert journal.read('/j3') == [{'step': 'start'}, {'step': 'apply'}]
    assert journal.read('/missing') is None


def test_a_record_is_found_in_the_audit_log_only_as_written():
    record = {'service': 'a', 'run_id': 'r1', 'source': 'role', 'time': 't1', 'outcome': 'success'}
    log = json.dumps({'service': 'b'}) + '\n' + json.dumps(record, sort_keys=True) + '\n'
    journal = _Journal(_Action({'/log': log}), {})
    assert journal.logged('/log', [record]) is True
    assert journal.logged('/log', [dict(record, time='t2')]) is False
    assert journal.logged('/missing', [record]) is False
    assert journal.logged('', [record]) is True
