"""Offline stand-in for the get-pip.py bootstrap script ansible-test downloads from its own CI host.

ansible-test creates its sanity virtualenvs without pip and runs this script (from its cache
directory) with pip-install arguments. This host reaches only the package registries, so instead of
downloading get-pip.py we bootstrap pip with the standard library's ensurepip and then let that pip
install the exact packages ansible-test asked for from the configured package index.
"""

import ensurepip
import os
import subprocess
import sys

env = dict(os.environ)  # ensurepip points PIP_CONFIG_FILE at /dev/null in this process; keep the real config
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
ensurepip.bootstrap(upgrade=False)
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args, env=env))
