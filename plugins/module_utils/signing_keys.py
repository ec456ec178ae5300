# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subscription signing keys of graceful.uwsgi.subscription_key.

Shared by the module (on any host) and its action plugin (in the
controller's own process, for a task that runs on the controller).  Plain
Python and ``cryptography``; no Ansible import.
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Dict, Optional, Tuple

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_ERROR: Optional[str] = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_ERROR = None

ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = dict(
    path=dict(type="path"),
    paths=dict(type="dict"),
    private_key=dict(type="str", no_log=True),
    private_keys=dict(type="dict", no_log=True),
    size=dict(type="int", default=2048),
)
ONE_FORM = [("path", "paths", "private_key", "private_keys")]


class KeyFailure(ValueError):
    """A key that cannot be read or made; ``changed`` says whether an earlier key was made."""

    def __init__(self, msg: str, changed: bool = False) -> None:
        super().__init__(msg)
        self.changed = changed


def public_path_of(path: str) -> str:
    base = path[:-4] if path.endswith(".pem") else path
    return base + ".pub"


def load_rsa_key(pem: bytes, what: str) -> Any:
    """The RSA private key in ``pem``, or ValueError naming ``what``."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("%s is not an unencrypted PEM private key: %s" % (what, exc))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("%s is not an RSA key (uWSGI signs subscriptions with RSA)" % what)
    return key


def public_pem_of(key: Any) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_of_file(path: str, size: int, check_mode: bool) -> Tuple[bool, str]:
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


def run(params: Dict[str, Any], check_mode: bool) -> Dict[str, Any]:
    """The module's result for validated ``params``; KeyFailure names the key at fault."""
    size = params["size"]
    if size < 2048:
        raise KeyFailure("size=%d is too small: use 2048 bits or more" % size)
    # One key is the one-entry case of several, under the name None.
    changed, public_keys = False, {}  # type: Tuple[bool, Dict[Any, str]]
    try:
        if params["private_key"] is not None or params["private_keys"] is not None:
            pems = {None: params["private_key"]} if params["private_key"] is not None else params["private_keys"]
            for name in sorted(pems, key=str):
                what = "private_key" if name is None else "private_keys[%s]" % name
                public_keys[name] = public_pem_of(load_rsa_key(str(pems[name]).encode(), what))
        else:
            paths = {None: params["path"]} if params["path"] is not None else params["paths"]
            for name in sorted(paths, key=str):
                # As type path expands O(path): ~ and $VARS.
                path = os.path.expanduser(os.path.expandvars(str(paths[name])))
                try:
                    made, public_keys[name] = public_key_of_file(path, size, check_mode)
                except ValueError as exc:
                    raise ValueError(str(exc) if name is None else "paths[%s]: %s" % (name, exc))
                changed = changed or made
    except ValueError as exc:
        raise KeyFailure(str(exc), changed)
    if params["path"] is not None:
        return dict(changed=changed, public_key=public_keys[None], public_path=public_path_of(params["path"]))
    if params["private_key"] is not None:
        return dict(changed=False, public_key=public_keys[None])
    return dict(changed=changed, public_keys=public_keys)
