"""Make ``ansible_collections.graceful.uwsgi`` importable from the working tree."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".cache", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "graceful", "uwsgi")

if not os.path.islink(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    try:
        os.symlink(ROOT, LINK)
    except FileExistsError:  # made by another pytest-xdist worker meanwhile
        pass
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
