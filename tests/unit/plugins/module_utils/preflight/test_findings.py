"""preflight/findings.py: the statement head shown (comments dropped, password literals masked), blocking findings
and what allows them. No database needed."""

from ansible_collections.homelab.migrations.plugins.module_utils.preflight import findings


def test_statement_head_drops_comments_and_masks_password_literals():
    text = "-- make the role\n\nCREATE ROLE r LOGIN PASSWORD 's3cr3t-pw'\n  VALID UNTIL 'infinity'\n  IN ROLE x"
    head = findings.statement_head(text)
    assert head == "CREATE ROLE r LOGIN PASSWORD '********'\n  VALID UNTIL 'infinity'"
    assert 's3cr3t' not in head


def test_blocking_and_allow():
    found = [findings.finding('m', None, 'byte_order_mark', 'error', 'x'),
             findings.finding('m', None, 'changing-column-type', 'warning', 'y', source='squawk')]
    assert [f['code'] for f in findings.blocking(found)] == ['byte_order_mark']
    assert findings.blocking(found, ['byte_order_mark']) == []
    assert findings.blocking(found, ['all']) == []
