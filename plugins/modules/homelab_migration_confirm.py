#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: homelab.migrations contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: homelab_migration_confirm
short_description: Ask on the controller's terminal before migrations run, with a time limit
version_added: 0.1.0
description:
  - Shows O(prompt) on the terminal of C(ansible-playbook) and waits at most O(timeout) seconds for an
    answer ended by Enter. An answer in O(answers) confirms; anything else, and no answer in time, is a no.
  - Never asks where nobody can answer, and then returns at once with RV(confirmed=false) and the reason
    (RV(runner)). Nobody can answer under AWX or Ansible Automation Platform (extra vars C(awx_job_id) or
    C(tower_job_id)), under ansible-runner (its environment, C(AWX_ISOLATED_DATA_DIR),
    C(RUNNER_OMIT_EVENTS), C(ANSIBLE_STDOUT_CALLBACK=awx_display)), under Semaphore (extra var
    C(semaphore_vars)), with C(CI) set in the environment, or when the standard input and output of
    C(ansible-playbook) are not a terminal. ansible-runner and Semaphore give C(ansible-playbook) a
    pseudo-terminal, so a terminal alone does not mean a person.
  - Runs once for the play on the controller (like M(ansible.builtin.pause)); its result is registered
    for the first host.
  - Used by the P(homelab.migrations.migrate_all#role) role.
author:
  - homelab.migrations contributors (@homelab)
options:
  prompt:
    description:
      - The question. The module adds how long it waits.
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for an answer; no answer within them counts as no. At least V(1).
    type: int
    default: 300
  ask:
    description:
      - V(false) never asks (returns RV(confirmed=false) at once).
    type: bool
    default: true
  answers:
    description:
      - Answers that confirm (compared without case and surrounding blanks).
    type: list
    elements: str
    default: ['yes', 'y']
attributes:
  check_mode:
    description: Asks in check mode too; it changes nothing either way.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
  action:
    description: Runs on the controller as an action plugin.
    support: full
  bypass_host_loop:
    description: Runs once for the play, not once per host.
    support: full
notes:
  - The timeout bounds only the wait for a person; the module never waits without one.
seealso:
  - module: ansible.builtin.pause
'''

EXAMPLES = r'''
- name: Ask before changing any database
  homelab.migrations.homelab_migration_confirm:
    prompt: 'Type "yes" to apply these migrations'
    timeout: 120
  register: answer

- name: Stop unless confirmed
  ansible.builtin.fail:
    msg: "Not confirmed: {{ answer.reason }}"
  when: not answer.confirmed
'''

RETURN = r'''
confirmed:
  description: The answer was one of O(answers), in time.
  returned: always
  type: bool
asked:
  description: The question was shown on a terminal.
  returned: always
  type: bool
timed_out:
  description: Nobody answered within O(timeout) seconds (counts as no).
  returned: always
  type: bool
answer:
  description: What was typed (null when nothing was asked).
  returned: always
  type: str
runner:
  description:
    - The machine that runs the play when one was detected (V(awx), V(ansible-runner), V(semaphore), V(ci)),
      else null.
  returned: always
  type: str
reason:
  description: Why the result is what it is (who or what prevented asking, or what the answer was).
  returned: always
  type: str
  sample: 'nobody to ask: ansible-runner (AWX_ISOLATED_DATA_DIR in the environment)'
timeout:
  description: The time limit that applied, in seconds.
  returned: always
  type: int
'''
