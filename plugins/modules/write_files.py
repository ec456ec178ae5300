#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: write_files
short_description: Write a set of small files in one step
version_added: 0.1.0
description:
  - Brings every file of O(files) to its content, owner, group and mode in one module call. A release stages
    its signing keys, environments and vassal files with it in one round trip per box, instead of one task
    (about three round trips) per file with M(ansible.builtin.copy) or M(ansible.builtin.template).
  - A changed file is written to a new file in the same directory (owner and mode set before the content) and
    renamed over the old one, so a reader never sees half a file. No symlink is followed; a symlink or other
    non-regular file at a path is replaced by a regular file.
  - Every parent directory must exist or be listed in O(directories) (with O(directories[].parents), its
    missing parents too), which the module brings to their owner, group and mode before it writes a file; in
    check mode a missing directory or an unknown owner only counts as a change.
  - Render templates on the controller, for example with the P(ansible.builtin.template#lookup) lookup.
  - A directory tree of the controller (O(trees)) travels as one archive, whatever its number of files, and
    is unpacked by the same rules as O(files); M(ansible.builtin.copy) costs a few round trips per file.
author:
  - graceful.uwsgi maintainers (@graceful-uwsgi)
options:
  files:
    description:
      - The files to write, each with its own attributes; an attribute an entry leaves out is the module's
        (O(owner), O(group), O(mode), O(show_content)).
      - O(files) and O(contents) may both be given; with neither, nothing changes.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The whole content of the file (text, written as UTF-8).
        type: str
        required: true
      owner:
        description: User that owns the file (default O(owner)).
        type: str
      group:
        description: Group of the file (default O(group)).
        type: str
      mode:
        description: Permissions (default O(mode)), as O(mode).
        type: raw
      show_content:
        description: Whether C(--diff) shows the content (default O(show_content)).
        type: bool
  directories:
    description:
      - Directories to create, or to bring to their owner, group and mode, before the files are written; in
        order, so a parent comes before its children. The parent of each must exist, be listed before it, or
        be created with O(directories[].parents).
      - A directory replaces nothing and follows no symlink unless O(directories[].follow) says so; the module
        fails, before any change, when something else than a directory is at one of these paths.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Permissions, as O(mode).
        type: raw
        required: true
      owner:
        description: User that owns the directory. When unset, an existing directory keeps its owner and a new one
          is owned by the user the module runs as.
        type: str
      group:
        description: Group of the directory, kept or the running user's when unset, as O(directories[].owner).
        type: str
      parents:
        description:
          - Create the missing parent directories of O(directories[].path) first, each with this entry's owner,
            group and mode, as M(ansible.builtin.file) does. A parent that exists is left as it is. A later entry may
            name one of them, to give it its own attributes.
        type: bool
        default: false
      follow:
        description:
          - When a symlink to a directory is at O(directories[].path), bring the directory it points to to the
            owner, group and mode, as M(ansible.builtin.file) does; without it the module fails there. For paths
            an administrator may have moved elsewhere with a symlink, never for one another user controls.
        type: bool
        default: false
  trees:
    description:
      - Directory trees to ship from the controller. The action plugin packs each into an archive on the
        controller (following symlinks, as M(ansible.builtin.copy) does by default) and sends it in one
        transfer; the module brings every directory and file of it to the host under O(trees[].path), by the
        rules of O(directories) and O(files). A file on the host that the tree does not have is left alone.
      - Directories get mode V(0755) and files V(0644), whatever their modes on the controller.
      - The module reads the archive one file at a time, so a tree may be larger than the host's free memory
        allows for one file only.
      - C(--diff) lists the directories and files of a tree that change, not their content.
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description:
          - The directory on the controller, found as M(ansible.builtin.copy) finds O(ansible.builtin.copy#module:src)
            (the role's or the playbook's C(files/) for a relative path).
        type: path
        required: true
      path:
        description:
          - Absolute path of the directory on the host; it and its missing parents are created. A symlink to a
            directory there is followed, as O(directories[].follow) does; never give a path another user controls.
        type: path
        required: true
      owner:
        description: User that owns the directories and files (default O(owner)).
        type: str
      group:
        description: Group of the directories and files (default O(group)).
        type: str
      archive:
        description:
          - Set by the action plugin, not in a task (a task that sets it fails); the path of the packed tree on
            the host.
        type: path
  prune:
    description:
      - Directories that hold exactly the files of this call. After the files are written, a file in one of
        them whose name matches O(prune_pattern) and that is neither in O(files) nor in O(contents) is
        removed (a symlink is removed, never followed). Subdirectories are left alone.
    type: list
    elements: path
    default: []
  keep:
    description:
      - Files of the O(prune) directories that stay although this call does not write them (such as files an
        earlier call wrote and something still uses).
    type: list
    elements: path
    default: []
  prune_pattern:
    description: Shell pattern (C(fnmatch)) of the names that O(prune) may remove.
    type: str
    default: "*"
  contents:
    description:
      - Files that share the module's attributes, as a dict of absolute path to content.
    type: dict
    default: {}
  owner:
    description:
      - User that owns the files. When unset, an existing file keeps its owner and a new one is owned by the user
        the module runs as.
    type: str
  group:
    description:
      - Group of the files. When unset, an existing file keeps its group and a new one gets the running user's.
    type: str
  mode:
    description:
      - Permissions of the files, as an octal string such as V("0640"); a number is taken as is, as
        M(ansible.builtin.file) takes it (YAML reads an unquoted C(0640) as the octal number, 416).
    type: raw
    default: "0644"
  show_content:
    description:
      - Whether C(--diff) shows the content. With V(false) it shows only that a file changes; use it for
        secrets, together with C(no_log) on the task.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - graceful.uwsgi.attributes
attributes:
  action:
    support: full
    details: The action plugin packs and sends O(trees).
  async:
    support: partial
    details: Not with O(trees).
  bypass_host_loop:
    support: none
  diff_mode:
    support: partial
    details: >-
      The content of a written file, or that it changes with O(show_content=false), and the files of a tree that
      change; not a change of owner or mode alone.
"""

EXAMPLES = r"""
- name: Install the public key of two domains
  graceful.uwsgi.write_files:
    contents:
      /etc/uwsgi-http-router/keys/shop.test.pem: "{{ shop_public_key }}"
      /etc/uwsgi-http-router/keys/www.shop.test.pem: "{{ shop_public_key }}"
    group: uwsgi-router
    mode: "0640"

- name: Install a private key and an environment (neither shown in --diff or the log)
  graceful.uwsgi.write_files:
    directories:
      - path: /etc/uwsgi-emperor/env
        owner: root
        group: uwsgi-app
        mode: "0750"
    files:
      - path: /etc/uwsgi-emperor/keys/shop.pem
        content: "{{ vault_shop_key }}"
        owner: uwsgi-app
        mode: "0600"
      - path: /etc/uwsgi-emperor/env/shop.ini
        content: "{{ lookup('ansible.builtin.template', 'shop-env.ini.j2') }}"
        group: uwsgi-app
        mode: "0640"
    show_content: false
  no_log: true

- name: Ship a release's code (one archive, however many files)
  graceful.uwsgi.write_files:
    trees:
      - src: /srv/build/shop/
        path: /srv/uwsgi-apps/shop/releases/1.5
    owner: root
    group: uwsgi-app
"""

RETURN = r"""
changed_directories:
  description: The paths of O(directories) created, or whose owner, group or mode changed (or would, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/uwsgi-emperor/env]
changed_files:
  description: The paths whose content, owner, group or mode changed (or would change, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/uwsgi-emperor/staging/shop_01.ini]
removed_files:
  description: The paths that O(prune) removed (or would remove, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/etc/uwsgi-emperor/staging/blog_01.ini]
"""

import fnmatch
import grp
import os
import pwd
import stat
import tarfile
import zlib
from dataclasses import replace

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.graceful.uwsgi.plugins.module_utils.file_set import (
    ATTRIBUTES, CREATE, NOTHING, WRITE, Wanted, WantedDirectory, apply_directory, apply_file, parse_mode, plan_directory, plan_file,
    read_current)

HIDDEN_BEFORE = "(old content not shown)\n"
HIDDEN_AFTER = "(new content not shown)\n"
# A tree's modes: those ansible.builtin.copy with mode u=rwX,g=rX,o=rX gave
# the emperor role's code directories (a new file's execute bit is not kept).
TREE_DIRECTORY_MODE = 0o755
TREE_FILE_MODE = 0o644
# --diff lists at most this many changed files of a tree.
TREE_DIFF_LINES = 50
# What a damaged or cut-off archive raises (tarfile, gzip, bz2, lzma).
ARCHIVE_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError)


def attributes_of(entry, check_mode):
    """(mode, uid, gid) of one entry; ValueError naming its path."""
    where = entry["path"]
    if not os.path.isabs(where):
        raise ValueError("%s: path must be absolute" % where)
    try:
        mode = parse_mode(entry["mode"])
    except ValueError as exc:
        raise ValueError("%s: %s" % (where, exc))
    ids = []
    for kind, lookup in (("owner", lambda name: pwd.getpwnam(name).pw_uid), ("group", lambda name: grp.getgrnam(name).gr_gid)):
        name = entry.get(kind)
        if name is None:
            ids.append(None)
            continue
        try:
            ids.append(lookup(name))
        except KeyError:
            if not check_mode:
                raise ValueError("%s: %s %s does not exist" % (where, kind, name))
            ids.append(-2)  # a user that will exist later: always a change
    return mode, ids[0], ids[1]


def wanted_of(entry, check_mode):
    """The Wanted file of one entry; ValueError naming its path."""
    mode, uid, gid = attributes_of(entry, check_mode)
    return Wanted(path=entry["path"], content=to_bytes(entry["content"], errors="surrogate_or_strict"), mode=mode, uid=uid, gid=gid)


def directories_of(entries, check_mode):
    """[(WantedDirectory, action)] in order; ValueError naming the path at fault."""
    planned = []
    listed = set()
    # Parents made for an earlier entry (parents: true) that a later entry may name itself.
    implicit = set()
    for entry in entries:
        path = os.path.normpath(str(entry["path"]))
        mode, uid, gid = attributes_of(dict(entry, path=path), check_mode)
        if path in listed and path not in implicit:
            raise ValueError("%s is listed twice" % path)
        parent = os.path.dirname(path)
        if entry.get("parents"):
            for missing in missing_parents(parent, listed):
                planned.append((WantedDirectory(path=missing, mode=mode, uid=uid, gid=gid), CREATE))
                listed.add(missing)
                implicit.add(missing)
        elif not check_mode and parent not in listed and not os.path.isdir(parent):
            raise ValueError("%s: directory %s does not exist" % (path, parent))
        if path in implicit:
            # Made above, as a parent of an earlier entry: this entry's attributes go on it after.
            implicit.discard(path)
            planned.append((WantedDirectory(path=path, mode=mode, uid=uid, gid=gid), ATTRIBUTES))
            continue
        target = os.path.realpath(path) if entry.get("follow") and os.path.islink(path) and os.path.isdir(path) else path
        wanted = WantedDirectory(path=target, mode=mode, uid=uid, gid=gid)
        current = read_current(target)
        planned.append((keep_unset_ids(current, wanted), plan_directory(current, wanted)))
        listed.update((path, target))
    return planned


def missing_parents(path, listed):
    """The ancestors of ``path`` (``path`` itself included) that neither exist nor are ``listed``,
    outermost first; ValueError when something else than a directory (or a symlink to one, which
    ansible.builtin.file follows too) is at the first that exists."""
    missing = []
    while path not in listed and path != os.path.dirname(path):
        if os.path.lexists(path):
            if not os.path.isdir(path):
                raise ValueError("%s exists and is not a directory" % path)
            break
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]


def diff_of(current, wanted, shown):
    def text(content, hidden):
        return to_text(content, errors="surrogate_or_replace") if shown else hidden
    before = "" if current is None or not current.regular else text(current.content, HIDDEN_BEFORE)
    return dict(before=before, after=text(wanted.content, HIDDEN_AFTER), before_header=wanted.path, after_header=wanted.path)


def keep_unset_ids(current, wanted):
    """An owner or group left unset keeps the existing file's, as ansible.builtin.copy does."""
    if current is None:
        return wanted
    return replace(wanted, uid=current.uid if wanted.uid is None else wanted.uid,
                   gid=current.gid if wanted.gid is None else wanted.gid)


def entries_of(params):
    """O(files) then O(contents), each with the module's attributes where it sets none."""
    defaults = dict((key, params[key]) for key in ("owner", "group", "mode", "show_content"))
    for entry in params["files"]:
        yield dict((key, defaults[key] if entry.get(key) is None else entry[key]) for key in defaults), entry
    for path, content in sorted(params["contents"].items()):
        yield defaults, dict(path=path, content=content)


def tree_of(tree, defaults):
    """(archive, directory entries, file entries) of one packed tree, the directories parents
    first; ValueError naming the tree and the member at fault.  Only plain directories and
    regular files with relative names inside the tree are taken: the archive comes from this
    collection's action plugin, but a host trusts nothing it is sent.  No content is read here
    (tree_content reads one file at a time), and the caller closes the archive."""
    root = os.path.normpath(str(tree["path"]))
    if not os.path.isabs(root):
        raise ValueError("%s: path must be absolute" % tree["path"])
    if not tree.get("archive"):
        raise ValueError("%s: the tree has no archive (write_files ships trees through its action plugin)" % root)
    owner = defaults["owner"] if tree.get("owner") is None else tree["owner"]
    group = defaults["group"] if tree.get("group") is None else tree["group"]
    directories = [dict(path=root, mode=TREE_DIRECTORY_MODE, owner=owner, group=group, parents=True, follow=True)]
    files = []
    archive = None
    try:
        archive = tarfile.open(str(tree["archive"]), "r:*")
        for member in archive:
            name = member.name
            if os.path.isabs(name) or os.path.normpath(name) != name or name.split("/")[0] in ("..", "."):
                raise ValueError("%s: %r in its archive is not a plain relative name" % (root, name))
            path = os.path.join(root, name)
            if member.isdir():
                directories.append(dict(path=path, mode=TREE_DIRECTORY_MODE, owner=owner, group=group,
                                        parents=False, follow=False))
            elif member.isfile():
                files.append(dict(path=path, mode=TREE_FILE_MODE, owner=owner, group=group, tree=root,
                                  archive=archive, member=member))
            else:
                raise ValueError("%s: %s in its archive is not a regular file or a directory" % (root, name))
        # To its end: gzip checks its CRC there, so a damaged archive fails before any change.
        while archive.fileobj.read(1 << 20):
            pass
    except ARCHIVE_ERRORS as exc:
        if archive is not None:
            archive.close()
        raise ValueError("%s: cannot read its archive %s: %s" % (root, tree["archive"], exc))
    except ValueError:
        archive.close()
        raise
    directories[1:] = sorted(directories[1:], key=lambda entry: entry["path"])
    return archive, directories, files


def claim_path(module, path, seen, parent_missing):
    """Fail naming ``path``, before any change, when it is listed twice, its directory is missing
    (``parent_missing``, the message, or None) or a directory is there; else note it in ``seen``."""
    if path in seen:
        module.fail_json(msg="%s is listed twice" % path)
    if parent_missing:
        module.fail_json(msg=parent_missing)
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg="%s is a directory" % path)
    seen.add(path)


def tree_content(entry):
    """The content of one file of a tree, read from its archive (in archive order, gzip reads on)."""
    return entry["archive"].extractfile(entry["member"]).read()


def tree_diff(root, directories, files):
    """One --diff entry for the directories and files of a tree that change."""
    changed = sorted(os.path.relpath(path, root) + "/" for path in directories) + sorted(
        os.path.relpath(path, root) for path in files)
    shown = changed[:TREE_DIFF_LINES]
    if len(changed) > TREE_DIFF_LINES:
        shown.append("... and %d more" % (len(changed) - TREE_DIFF_LINES))
    return dict(before_header=root, after_header=root, before="",
                after="%d %s and %d %s of the tree new or changed:\n%s\n" % (
                    len(directories), "directory" if len(directories) == 1 else "directories",
                    len(files), "file" if len(files) == 1 else "files", "\n".join(shown)))


def unlisted(directories, pattern, listed):
    """The files of ``directories`` whose names match ``pattern`` and that are not ``listed``, sorted."""
    found = []
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if (fnmatch.fnmatchcase(entry.name, pattern) and entry.path not in listed
                    and not stat.S_ISDIR(entry.stat(follow_symlinks=False).st_mode)):
                found.append(entry.path)
    return sorted(found)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                mode=dict(type="raw", required=True),
                owner=dict(type="str"),
                group=dict(type="str"),
                parents=dict(type="bool", default=False),
                follow=dict(type="bool", default=False),
            )),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                content=dict(type="str", required=True),
                owner=dict(type="str"),
                group=dict(type="str"),
                mode=dict(type="raw"),
                show_content=dict(type="bool"),
            )),
            trees=dict(type="list", elements="dict", default=[], options=dict(
                src=dict(type="path", required=True),
                path=dict(type="path", required=True),
                owner=dict(type="str"),
                group=dict(type="str"),
                archive=dict(type="path"),
            )),
            contents=dict(type="dict", default={}),
            prune=dict(type="list", elements="path", default=[]),
            prune_pattern=dict(type="str", default="*"),
            keep=dict(type="list", elements="path", default=[]),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw", default="0644"),
            show_content=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    archives, tree_directories, tree_files = [], [], []
    try:
        for tree in module.params["trees"]:
            archive, more_directories, more_files = tree_of(tree, module.params)
            archives.append(archive)
            tree_directories.extend(more_directories)
            tree_files.extend(more_files)
        directories = directories_of(module.params["directories"] + tree_directories, module.check_mode)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    # A followed tree root is planned at its target; its files are named under the root.
    new_directories = set(directory.path for directory, _action in directories) | set(
        entry["path"] for entry in tree_directories)
    tree_roots = sorted((entry["path"] for entry in tree_directories if entry["parents"]), key=len, reverse=True)
    wanted = []
    seen = set()
    for entry in tree_files:
        try:
            mode, uid, gid = attributes_of(entry, module.check_mode)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        claim_path(module, entry["path"], seen, None if os.path.dirname(entry["path"]) in new_directories
                   else "%s: %s has no directory in the archive" % (entry["tree"], entry["path"]))
        # Not shown one by one: --diff lists a tree's changes (tree_diff). The content is read when its turn comes.
        wanted.append((Wanted(path=entry["path"], content=b"", mode=mode, uid=uid, gid=gid), False, entry))
    for attributes, entry in entries_of(module.params):
        path = str(entry["path"])
        if not isinstance(entry["content"], str):
            module.fail_json(msg="%s: content must be text, got %s" % (path, type(entry["content"]).__name__))
        entry = dict(attributes, path=path, content=entry["content"])
        if not entry["show_content"]:
            # Hidden from the output even when the task has no no_log.
            module.no_log_values.add(entry["content"])
        try:
            item = wanted_of(entry, module.check_mode)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        parent = os.path.dirname(item.path)
        claim_path(module, item.path, seen, None if module.check_mode or parent in new_directories or os.path.isdir(parent)
                   else "%s: directory %s does not exist" % (item.path, parent))
        wanted.append((item, entry["show_content"], None))
    changed_directories, changed_files, diffs = [], [], []
    tree_changes = dict((root, ([], [])) for root in tree_roots)
    # Every entry is checked above before the first change.
    for directory, action in directories:
        if action == NOTHING:
            continue
        if directory.path not in changed_directories:
            changed_directories.append(directory.path)
        # A tree's own directories are in its summary (tree_diff).
        root = next((root for root in tree_roots if directory.path == root or directory.path.startswith(root + "/")), None)
        if action == CREATE and root is not None:
            tree_changes[root][0].append(directory.path)
        elif action == CREATE and module._diff:
            diffs.append(dict(before_header=directory.path, after_header=directory.path, before="", after="(directory)\n"))
        if not module.check_mode:
            try:
                apply_directory(action, directory)
            except OSError as exc:
                module.fail_json(msg="%s: %s" % (directory.path, exc), changed=True,
                                 changed_directories=changed_directories, changed_files=[])
    for item, shown, tree_entry in wanted:
        try:
            if tree_entry is not None:
                item = replace(item, content=tree_content(tree_entry))
            current = read_current(item.path)
            item = keep_unset_ids(current, item)
            action = plan_file(current, item)
            if action == NOTHING:
                continue
            changed_files.append(item.path)
            if action == WRITE and tree_entry is not None:
                tree_changes[tree_entry["tree"]][1].append(item.path)
            elif action == WRITE and module._diff:
                diffs.append(diff_of(current, item, shown))
            if not module.check_mode:
                apply_file(action, item)
        except ARCHIVE_ERRORS as exc:
            module.fail_json(msg="%s: %s" % (item.path, exc), changed=bool(changed_directories or changed_files),
                             changed_directories=changed_directories, changed_files=changed_files)
    for archive in archives:
        archive.close()
    if module._diff:
        diffs.extend(tree_diff(root, *changed) for root, changed in sorted(tree_changes.items()) if changed != ([], []))
    prune = [os.path.normpath(str(path)) for path in module.params["prune"]]
    listed = set(os.path.normpath(str(path)) for path in list(seen) + module.params["keep"])
    removed_files = unlisted(prune, module.params["prune_pattern"], listed)
    for path in removed_files:
        if module._diff:
            current = read_current(path)
            before = "(not a regular file)\n" if current is None or not current.regular else diff_of(
                current, Wanted(path, b"", 0), module.params["show_content"])["before"]
            diffs.append(dict(before_header=path, after_header=path, before=before, after=""))
        if not module.check_mode:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                module.fail_json(msg="%s: %s" % (path, exc), changed=True, changed_directories=changed_directories,
                                 changed_files=changed_files, removed_files=removed_files)
    result = dict(changed=bool(changed_directories or changed_files or removed_files),
                  changed_directories=changed_directories, changed_files=changed_files, removed_files=removed_files)
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
