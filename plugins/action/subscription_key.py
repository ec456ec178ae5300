# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of graceful.uwsgi.subscription_key: on the controller (a local connection
without become, as the roles run it) the keys are read or made in Ansible's own process, which
saves a module run (about a second) in every playbook; anywhere else the module runs."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.graceful.uwsgi.plugins.module_utils.signing_keys import (
    ARGUMENT_SPEC,
    HAS_CRYPTOGRAPHY,
    ONE_FORM,
    KeyFailure,
    run,
)
from ansible_collections.graceful.uwsgi.plugins.plugin_utils.module_action import ModuleAction


class ActionModule(ModuleAction, ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def in_process(self) -> bool:
        """Whether the module would run as this process's user on this machine, with its environment."""
        return (self._connection.transport == "local" and self._connection.become is None
                and not self._play_context.become and not self._task.async_val and not self._task.environment
                and HAS_CRYPTOGRAPHY)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        if not self.in_process():
            return self.run_module(result, task_vars)
        # The module's checks and messages; like fail_json, no message shows a private key.
        secrets = [str(value) for value in [self._task.args.get("private_key")]
                   + list((self._task.args.get("private_keys") or {}).values()) if value]
        try:
            params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, required_one_of=ONE_FORM,
                                                 mutually_exclusive=ONE_FORM)[1]
            result.update(run(params, bool(self._task.check_mode)))
        except KeyFailure as exc:
            raise AnsibleActionFail(remove_values(str(exc), secrets), result=dict(changed=exc.changed))
        except AnsibleActionFail as exc:
            raise AnsibleActionFail(remove_values(exc.message, secrets))
        return result
