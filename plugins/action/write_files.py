# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of graceful.uwsgi.write_files: packs O(trees) on the controller and sends each
in one transfer; without trees the module runs as through ansible-core's normal action (no
temporary directory, so such a call costs what a plain module call costs; async works)."""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

from ansible_collections.graceful.uwsgi.plugins.plugin_utils.module_action import ModuleAction
from ansible_collections.graceful.uwsgi.plugins.plugin_utils.tree_archive import pack


class ActionModule(ModuleAction, ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        trees = args.get("trees") or []
        if not trees:
            return self.run_module(result, task_vars, module_args=args)
        if self._task.async_val:
            raise AnsibleActionFail("trees cannot be shipped with async")
        if not isinstance(trees, list) or not all(isinstance(tree, dict) for tree in trees):
            raise AnsibleActionFail("trees must be a list of dicts, each with src and path")
        local_dir = tempfile.mkdtemp(prefix="graceful-uwsgi-trees.")
        try:
            # Everything is packed before the host is touched: a bad src costs no round trip.
            packed = []
            for index, tree in enumerate(trees):
                where = "trees[%d] (path %s)" % (index, tree.get("path"))
                if tree.get("archive") is not None:
                    raise AnsibleActionFail("%s: archive is set by the action plugin, not in a task" % where)
                if not tree.get("src"):
                    raise AnsibleActionFail("%s: src is required" % where)
                try:
                    src = self._find_needle("files", os.path.expanduser(str(tree["src"])))
                except AnsibleError as exc:
                    raise AnsibleActionFail("%s: %s" % (where, exc))
                local = os.path.join(local_dir, "tree-%d.tar.gz" % index)
                try:
                    with open(local, "wb") as out:
                        pack(src, out)
                except (OSError, ValueError) as exc:
                    raise AnsibleActionFail("%s: cannot pack %s: %s" % (where, src, exc))
                packed.append((dict(tree, src=src), local))
            self._make_tmp_path()
            shipped, remotes = [], []
            for tree, local in packed:
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir, os.path.basename(local))
                self._transfer_file(local, remote)
                remotes.append(remote)
                shipped.append(dict(tree, archive=remote))
            # Readable by the become user when it is not the connection's (data: no execute bit).
            self._fixup_perms2([self._connection._shell.tmpdir] + remotes, execute=False)
            args["trees"] = shipped
            # The temporary directory goes in cleanup(), after a failure too.
            return merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars))
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
