"""adapters/alembic/config.py: version_locations, script_location and the pyproject.toml fallback as alembic's own
Config reads them, and unusable configs named with what is wrong. No database; files in a temp directory."""

import os
import warnings

import pytest

from harness.alembic_files import make_project, template

from ansible_collections.homelab.migrations.plugins.module_utils.adapters.alembic.config import AlembicConfig
from ansible_collections.homelab.migrations.plugins.module_utils.adapters.base import AdapterError

from alembic.config import Config


@pytest.mark.parametrize('separator_line,value,names', [
    ('path_separator = os', '%(here)s/v1:%(here)s/v2', ['v1', 'v2']),
    ('path_separator = ;', '%(here)s/v1; %(here)s/v2', ['v1', 'v2']),
    ('path_separator = space', 'v1 v2', ['v1', 'v2']),
    ('path_separator = newline', '\n    v1\n    v2', ['v1', 'v2']),
    ('version_path_separator = :', 'v1:v2', ['v1', 'v2']),
    ('', 'v1, v2', ['v1', 'v2']),  # legacy split on spaces/commas
    ('', 'v1 v2', ['v1', 'v2']),
])
def test_version_locations_follow_alembic_config(tmp_path, monkeypatch, separator_line, value, names):
    root = os.fspath(tmp_path)
    ini = '[alembic]\nscript_location = alembic\n%s\nversion_locations = %s\n' % (separator_line, value)
    make_project(root, {}, ini=ini)
    monkeypatch.chdir(root)
    cfg = Config(os.path.join(root, 'alembic.ini'))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the legacy split is deprecated
        theirs = [os.path.normpath(os.path.join(root, p)) for p in cfg.get_version_locations_list()]
    ours = AlembicConfig(root, 'alembic.ini').version_locations
    assert ours == theirs
    assert ours == [os.path.join(root, n) for n in names]


def test_relative_script_location_is_relative_to_the_service_path(tmp_path):
    root = make_project(tmp_path, {'a.py': template('a')}, ini='[alembic]\nscript_location = alembic\n')
    config = AlembicConfig(root, 'alembic.ini')
    assert config.script_location == os.path.join(root, 'alembic')
    assert config.version_locations == [os.path.join(root, 'alembic', 'versions')]


def test_pyproject_toml_fallback(tmp_path):
    root = os.fspath(tmp_path)
    make_project(root, {}, ini='[alembic]\n', versions='migrations/versions')
    os.makedirs(os.path.join(root, 'migrations', 'more'))
    with open(os.path.join(root, 'pyproject.toml'), 'w') as fh:
        fh.write('[tool.alembic]\nscript_location = "%(here)s/migrations"\n'
                 'version_locations = ["%(here)s/migrations/versions", "%(here)s/migrations/more"]\n'
                 'recursive_version_locations = true\n')
    config = AlembicConfig(root, 'alembic.ini')
    assert config.script_location == os.path.join(root, 'migrations')
    assert config.version_locations == [os.path.join(root, 'migrations/versions'),
                                        os.path.join(root, 'migrations/more')]
    assert config.recursive is True
    # `-c pyproject.toml`: the toml is the config
    os.unlink(os.path.join(root, 'alembic.ini'))
    config = AlembicConfig(root, 'pyproject.toml')
    assert config.script_location == os.path.join(root, 'migrations')


@pytest.mark.parametrize('ini,files,expect', [
    (None, 'missing', 'not found'),
    ('[alembic]\nsqlalchemy.url = x\n', {}, "no 'script_location'"),
    ('[alembic]\nscript_location = mypkg:migrations\n', {}, 'package resource'),
    ('[alembic]\nscript_location = nowhere\n', {}, 'does not exist'),
    ('[alembic]\nscript_location = alembic\nversion_locations = a b\npath_separator = comma\n', {},
     "'comma' is not a valid value for path_separator"),
    ('[alembic]\nscript_location = %(nothere)s/alembic\n', {}, 'cannot read script_location'),
    ('[alembic\nscript_location = alembic\n', {}, 'cannot read alembic config'),
])
def test_unusable_configs_say_which_file_and_what(tmp_path, ini, files, expect):
    root = os.fspath(tmp_path)
    if files == 'missing':
        os.makedirs(os.path.join(root, 'alembic'))
    else:
        make_project(root, files, ini=ini)
    with pytest.raises(AdapterError) as err:
        AlembicConfig(root, 'alembic.ini')
    assert expect in str(err.value)
    assert os.path.join(root, 'alembic.ini') in str(err.value)
