# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The path of this collection's action plugins that runs their module as ansible-core's normal
action does (async included): for a call that needs nothing of the controller."""

from __future__ import annotations

from ansible.utils.vars import merge_hash


class ModuleAction:
    """A mixin for an ActionBase subclass with ``_supports_async = True``."""

    def run_module(self, result, task_vars, module_args=None):
        """``result`` merged with the module's, run as ansible.builtin.normal runs it."""
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(module_args=module_args, task_vars=task_vars,
                                                         wrap_async=wrap_async))
        if not wrap_async:
            # The temporary directory of a module run; an async one removes its own.
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
