# -*- coding: utf-8 -*-
# Copyright: graceful.uwsgi contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack a directory tree of the controller into one archive (plain Python, controller only).

The write_files action plugin sends the archive in one transfer and the
module unpacks it by its own rules: however many files a release's code has,
shipping it costs the same few round trips.  Symlinks are followed, as
ansible.builtin.copy follows them by default; the archive holds only
directories and regular files, with relative names, parents first.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import BinaryIO, List, Set, Tuple


def pack(src: str, out: BinaryIO) -> int:
    """Write the tree at ``src`` to ``out`` as a gzipped tar; return how many files it holds.
    ValueError naming the path at fault: a broken symlink, a symlink loop, a name that is not
    UTF-8, or something that is neither a directory nor a regular file (a socket, a device)."""
    if not os.path.isdir(src):
        raise ValueError("%s is not a directory" % src)
    count = 0
    # Level 1: the controller's CPU is the scarce part of a release, not the network.
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=1) as archive:
        # (directory, name in the archive, the (device, inode) of its ancestors: a loop's mark)
        pending: List[Tuple[str, str, Set[Tuple[int, int]]]] = [(src, "", set())]
        while pending:
            directory, prefix, ancestors = pending.pop()
            here = os.stat(directory)
            ancestors = ancestors | {(here.st_dev, here.st_ino)}
            subdirectories = []
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("%r: the name is not UTF-8" % path)
                try:
                    info = os.stat(path)
                except OSError as exc:
                    raise ValueError("%s: %s" % (path, exc.strerror or exc))
                member = tarfile.TarInfo(prefix + name)
                member.mtime = int(info.st_mtime)
                if stat.S_ISDIR(info.st_mode):
                    if (info.st_dev, info.st_ino) in ancestors:
                        raise ValueError("%s: a symlink loop (it leads back to a directory above it)" % path)
                    member.type, member.mode = tarfile.DIRTYPE, 0o755
                    archive.addfile(member)
                    subdirectories.append((path, prefix + name + "/", ancestors))
                elif stat.S_ISREG(info.st_mode):
                    member.size, member.mode = info.st_size, stat.S_IMODE(info.st_mode)
                    with open(path, "rb") as handle:
                        archive.addfile(member, handle)
                    count += 1
                else:
                    raise ValueError("%s is neither a directory nor a regular file" % path)
            # Depth first, in name order: a directory's entry always comes before its files.
            pending.extend(reversed(subdirectories))
    return count
