"""The migrate_all role's decisions, as one namespace for the tests (they live in three plugin_utils modules)."""

import types

from ansible_collections.homelab.migrations.plugins.plugin_utils import recovery, selection, text

role_logic = types.SimpleNamespace(**dict(
    (name, getattr(module, name)) for module in (selection, recovery, text) for name in dir(module)
    if name.startswith('migrate_all_')))
