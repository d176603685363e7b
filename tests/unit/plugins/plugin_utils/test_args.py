"""plugin_utils.args.validated: the action plugins' argument check (ansible's ArgumentSpecValidator): defaults
filled in, every error named with the action's name, and the message masked when the caller asks."""

from ansible_collections.homelab.migrations.plugins.plugin_utils.args import validated

SPEC = {'timeout': {'type': 'int', 'default': 300}, 'prompt': {'type': 'str', 'required': True}}


def test_valid_arguments_come_back_with_defaults():
    params, error = validated('x_action', SPEC, {'prompt': 'go?'})
    assert error is None and params == {'prompt': 'go?', 'timeout': 300}


def test_every_error_is_named_with_the_action():
    params, error = validated('x_action', SPEC, {'timeout': 'soon', 'extra': 1})
    assert params is None and error.startswith('x_action: ')
    assert 'prompt' in error and 'timeout' in error and 'extra' in error


def test_the_message_is_masked_when_asked():
    args = {'prompt': 'go?', 'timeout': 'postgresql://u:s3cret@h/db'}  # the validator quotes a bad value
    assert 's3cret' in validated('x_action', SPEC, args)[1]
    _params, error = validated('x_action', SPEC, args, mask=lambda text: text.replace('s3cret', '********'))
    assert 's3cret' not in error and '********' in error
