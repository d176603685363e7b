"""adapters/drizzle/sql.py: how a statement is displayed."""


from ansible_collections.homelab.migrations.plugins.module_utils.adapters.drizzle import sql


def test_display_statement_adds_semicolon_outside_comments():
    assert sql.display_statement('  SELECT 1\n') == 'SELECT 1;'
    assert sql.display_statement('SELECT 1;') == 'SELECT 1;'
    assert sql.display_statement('SELECT 1 -- trailing') == 'SELECT 1 -- trailing\n;'
