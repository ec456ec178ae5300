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
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  path:
    description:
      - Path of the private key; the public key goes to the same path with C(.pub).
      - One of O(path), O(paths), O(private_key) and O(private_keys) is required.
    type: path
  paths:
    description: Several private keys, each as O(path), as a dict of name (the app's) to path.
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
  - graceful.uwsgi.attributes
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
  type: list
  elements: str
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_ERROR = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_ERROR = None


def public_path_of(path):
    base = path[:-4] if path.endswith(".pem") else path
    return base + ".pub"


def load_rsa_key(pem, what):
    """The RSA private key in ``pem`` (bytes), or ValueError naming ``what``."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("%s is not an unencrypted PEM private key: %s" % (what, exc))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("%s is not an RSA key (uWSGI signs subscriptions with RSA)" % what)
    return key


def public_pem_of(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_of_file(path, size, check_mode):
    """(changed, public key) of the key at ``path``, made (with its .pub) if missing; ValueError on a bad key."""
    public_path = public_path_of(path)
    changed = False
    if os.path.exists(path):
        try:
            with open(path, "rb") as handle:
                key = load_rsa_key(handle.read(), path)
        except OSError as exc:
            raise ValueError("%s is not readable: %s" % (path, exc))
    else:
        if check_mode:
            return True, ""
        changed = True
        key = rsa.generate_private_key(public_exponent=65537, key_size=size)
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        except OSError as exc:
            raise ValueError("cannot write the private key %s: %s" % (path, exc))
    public_pem = public_pem_of(key)
    current = None
    if os.path.exists(public_path):
        with open(public_path) as handle:
            current = handle.read()
    if current != public_pem:
        changed = True
        if not check_mode:
            with open(public_path, "w") as handle:
                handle.write(public_pem)
    return changed, public_pem


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path"),
            paths=dict(type="dict"),
            private_key=dict(type="str", no_log=True),
            private_keys=dict(type="dict", no_log=True),
            size=dict(type="int", default=2048),
        ),
        required_one_of=[("path", "paths", "private_key", "private_keys")],
        mutually_exclusive=[("path", "paths", "private_key", "private_keys")],
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_ERROR)
    size = module.params["size"]
    if size < 2048:
        module.fail_json(msg="size=%d is too small: use 2048 bits or more" % size)
    params = module.params
    # One key is the one-entry case of several, under the name None.
    changed, public_keys = False, {}
    try:
        if params["private_key"] is not None or params["private_keys"] is not None:
            pems = {None: params["private_key"]} if params["private_key"] is not None else params["private_keys"]
            for name in sorted(pems, key=str):
                what = "private_key" if name is None else "private_keys[%s]" % name
                public_keys[name] = public_pem_of(load_rsa_key(str(pems[name]).encode(), what))
        else:
            paths = {None: params["path"]} if params["path"] is not None else params["paths"]
            for name in sorted(paths, key=str):
                try:
                    made, public_keys[name] = public_key_of_file(str(paths[name]), size, module.check_mode)
                except ValueError as exc:
                    raise ValueError(str(exc) if name is None else "paths[%s]: %s" % (name, exc))
                changed = changed or made
    except ValueError as exc:
        module.fail_json(msg=str(exc), changed=changed)
    if params["path"] is not None:
        module.exit_json(changed=changed, public_key=public_keys[None], public_path=public_path_of(params["path"]))
    if params["private_key"] is not None:
        module.exit_json(changed=False, public_key=public_keys[None])
    module.exit_json(changed=changed, public_keys=public_keys)


if __name__ == "__main__":
    main()
