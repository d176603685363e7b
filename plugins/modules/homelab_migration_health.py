#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: homelab_migration_health
short_description: Check that a service answers 2xx, bounded over all attempts
version_added: 0.1.0
description:
  - Sends C(GET) to O(url) until it answers with a 2xx status, at most O(retries) attempts with O(delay)
    seconds between them, and never longer than O(deadline) in total.
  - Each attempt must get its whole answer (resolving the host name, connecting, status line, headers and up
    to 64 KiB of body) within O(timeout) seconds; a DNS server that never answers or an endpoint that sends
    its answer a byte at a time does not keep it longer (unlike M(ansible.builtin.uri), whose timeout applies
    to each read).
  - Never fails because the service is unhealthy; it returns RV(healthy) and the caller decides (the
    P(homelab.migrations.migrate_all#role) role rolls the service back). Fails only for a URL it cannot check.
  - Credentials in the URL (C(http://user:password@host/health)) are sent as HTTP basic auth and masked in
    every message and return value, and in the module arguments Ansible shows at C(-vvv).
  - SIGINT, SIGHUP, SIGTERM or the end of the controller stop it at once.
author:
  - homelab.migrations contributors (@homelab)
options:
  url:
    description:
      - The C(http://) or C(https://) URL to check. No proxy is used.
      - "Percent-encode C(@ : / ? # %) in the user and password (C(%40 %3A %2F %3F %23 %25)). A URL with an C(@)
        after its host part is refused (an unencoded C(/), C(?) or C(#) in a password would end the host part and
        send the rest of the password to another host); encode an C(@) of the path or query as C(%40)."
    type: str
    required: true
  timeout:
    description:
      - Seconds one attempt may take, from connecting to the end of the answer.
    type: int
    default: 10
  retries:
    description:
      - How many attempts at most (at least one).
    type: int
    default: 3
  delay:
    description:
      - Seconds between attempts.
    type: int
    default: 2
  deadline:
    description:
      - Seconds all attempts together may take. Default O(retries) x O(timeout) + (O(retries) - 1) x O(delay).
    type: int
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https://) URLs.
    type: bool
    default: true
attributes:
  check_mode:
    description: Checks in check mode too; it changes nothing either way.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
notes:
  - Used by the P(homelab.migrations.migrate_all#role) role after a service's migrations
    (C(migrate_all_health_check_*) options).
'''

EXAMPLES = r'''
- name: Check the dashboard after its migrations
  homelab.migrations.homelab_migration_health:
    url: http://127.0.0.1:8080/healthz
    timeout: 5
    retries: 3
  register: health

- name: Fail unless healthy
  ansible.builtin.fail:
    msg: "{{ health.msg }}"
  when: not health.healthy
'''

RETURN = r'''
healthy:
  description: The service answered 2xx within the limits.
  returned: always
  type: bool
status:
  description: The HTTP status of the last answer; V(-1) when there was no complete answer.
  returned: always
  type: int
  sample: 503
attempts:
  description: How many attempts were made.
  returned: always
  type: int
elapsed_seconds:
  description: Seconds all attempts took.
  returned: always
  type: float
deadline:
  description: The overall limit that applied, in seconds.
  returned: always
  type: int
msg:
  description: What happened, with the URL's credentials masked.
  returned: always
  type: str
reason:
  description: The last answer (V(HTTP 503)) or why there was none (a timeout, a refused connection), masked.
  returned: always
  type: str
url:
  description: The URL checked, credentials masked.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.migrations.plugins.module_utils import interrupt
from ansible_collections.homelab.migrations.plugins.module_utils.health import (
    DEFAULT_DELAY,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    HealthError,
    check,
)
from ansible_collections.homelab.migrations.plugins.module_utils.secrets import all_spellings


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            timeout=dict(type='int', default=DEFAULT_TIMEOUT),
            retries=dict(type='int', default=DEFAULT_RETRIES),
            delay=dict(type='int', default=DEFAULT_DELAY),
            deadline=dict(type='int'),
            validate_certs=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # credentials in the URL (http://user:password@host/): masked in the result and its invocation at any
    # verbosity, in every spelling (basic-auth base64 included)
    module.no_log_values.update(all_spellings([p['url']]))
    try:
        with interrupt.Guard():
            result = check(p['url'], timeout=p['timeout'], retries=p['retries'], delay=p['delay'],
                           deadline=p['deadline'], validate_certs=p['validate_certs'])
    except HealthError as exc:
        module.fail_json(msg=str(exc))
    except interrupt.Interrupted as exc:
        module.fail_json(msg='health check %s' % exc.reason, error_code=interrupt.ERROR_CODE, healthy=False,
                         status=-1)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
