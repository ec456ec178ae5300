#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: subscription_key
short_description: Create the RSA key pair that signs an app's uWSGI subscriptions
version_added: 0.1.0
description:
  - Creates an RSA private key (PEM, PKCS8, mode 0600) at O(path) and its public key next to it
    (O(path) with C(.pub) instead of C(.pem)), unless they exist; returns the public key.
  - The vassals of the app sign their subscriptions with the private key (uWSGI C(subscribe2 ... sign=));
    the fastrouters and HTTP routers check them with the public key (C(subscriptions-sign-check)).
  - Meant to run on the controller (C(delegate_to) C(localhost)) so that every box of the cluster gets the same
    key pair; an existing key (for example one restored from a vault) is kept as it is.
  - With O(private_key) instead (a key kept in a variable, for example with Ansible Vault) it writes nothing and
    returns the public key of that private key.
  - O(paths) and O(private_keys) do the same for several keys in one call (one module run for all the apps of a
    cluster), each key under a name (the app's), and return the public keys by name in RV(public_keys); a
    message about a bad key names it.
  - Needs the C(cryptography) Python library where it runs (ansible-core depends on it).
  - On the controller (a local connection without become, async or a task C(environment), as with
    C(delegate_to) C(localhost) and C(become) C(false)) the action plugin does the work in Ansible's own
    process, with no module run.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  path:
    description:
      - Path of the private key; the public key goes to the same path with C(.pub).
      - One of O(path), O(paths), O(private_key) and O(private_keys) is required.
    type: path
  paths:
    description:
      - Several private keys, each as O(path), as a dict of name (the app's) to path; C(~) and environment
        variables are expanded as in O(path).
    type: dict
  private_key:
    description:
      - An unencrypted RSA private key (PEM) to use instead of a file; nothing is written, and it is never logged.
    type: str
  private_keys:
    description: Several private keys, each as O(private_key), as a dict of name (the app's) to key.
    type: dict
  size:
    description: Key size in bits of a new key.
    type: int
    default: 2048
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - graceful.uwsgi.attributes
attributes:
  action:
    support: full
    details: On the controller, without become, the keys are read or made in Ansible's own process.
  async:
    support: full
  bypass_host_loop:
    support: none
requirements:
  - cryptography
"""

EXAMPLES = r"""
- name: Create the signing key of the shop app on the controller
  graceful.uwsgi.subscription_key:
    path: "{{ lookup('ansible.builtin.env', 'HOME') }}/.graceful-uwsgi/keys/shop.pem"
  delegate_to: localhost
  run_once: true

- name: Create the signing keys of every app in one step
  graceful.uwsgi.subscription_key:
    paths:
      shop: /root/.graceful-uwsgi/keys/shop.pem
      blog: /root/.graceful-uwsgi/keys/blog.pem
  delegate_to: localhost
  run_once: true

- name: Get the public key of a key kept in a vaulted variable
  graceful.uwsgi.subscription_key:
    private_key: "{{ vault_shop_subscription_key }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
public_key:
  description: The public key (PEM); empty in check mode when the key does not exist yet.
  returned: when O(path) or O(private_key) is given
  type: str
public_path:
  description: Where the public key is.
  returned: when O(path) is given
  type: str
public_keys:
  description: The public keys (PEM) of O(paths) or O(private_keys), by name; an empty string in check mode
    for a key that does not exist yet.
  returned: when O(paths) or O(private_keys) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.graceful.uwsgi.plugins.module_utils.signing_keys import (
    ARGUMENT_SPEC,
    CRYPTOGRAPHY_ERROR,
    HAS_CRYPTOGRAPHY,
    ONE_FORM,
    KeyFailure,
    run,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_one_of=ONE_FORM, mutually_exclusive=ONE_FORM,
                           supports_check_mode=True)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_ERROR)
    try:
        module.exit_json(**run(module.params, module.check_mode))
    except KeyFailure as exc:
        module.fail_json(msg=str(exc), changed=exc.changed)


if __name__ == "__main__":
    main()
