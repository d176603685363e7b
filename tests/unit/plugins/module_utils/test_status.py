"""status.py without a server: the password forms a report is scrubbed of. With real PostgreSQL, alembic and
drizzle-orm: tests/integration/plugins/module_utils/test_status.py."""

from ansible_collections.homelab.migrations.plugins.module_utils import status as status_mod
from ansible_collections.homelab.migrations.plugins.module_utils.dburl import DbUrl


def test_password_forms_cover_plain_and_encoded():
    forms = status_mod.password_forms([DbUrl('postgresql://u:a%40b%2Fc@h/db'), DbUrl('postgresql://u:xy@h/db'),
                                       DbUrl('postgresql://u@h/db')])
    assert {'a@b/c', 'a%40b%2Fc', 'a%40b/c', 'a%40b%2fc', 'a%%40b%%2Fc'} <= forms
    assert not [f for f in forms if 'xy' in f or f == 'dTp4eQ==']  # too short to mask: base64 of u:xy too
