#!/usr/bin/env python3
"""Benchmark shipping a code directory to a lab box: ansible.builtin.copy against write_files' trees.

Generates a code tree of ``--files`` files (about 2 KB each, 20 per
directory), then ships it to the first app box of the lab into a new
directory with each way, twice (the second run changes nothing), and prints
the playbook's wall time for each, less that of a playbook that does nothing
on the same box (Ansible's start-up).  The emperor role ships
``emperor_apps[].src`` directories with write_files' trees.  Removes what it
wrote on the box.

    python benchmarks/ship_bench.py --inventory lab/state/inventory.yml [--files 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "support"))

from release_cases import Lab  # noqa: E402

PLAYBOOK = """---
- name: Ship a code tree
  hosts: "{{ bench_host }}"
  gather_facts: false
  become: true
  tasks:
    - name: Ship it with ansible.builtin.copy
      ansible.builtin.copy:
        src: "{{ bench_src }}/"
        dest: "{{ bench_dest }}/"
        owner: root
        group: root
        mode: u=rwX,g=rX,o=rX
      when: bench_way == 'copy'

    - name: Ship it with graceful.uwsgi.write_files
      graceful.uwsgi.write_files:
        trees:
          - src: "{{ bench_src }}"
            path: "{{ bench_dest }}"
        owner: root
        group: root
      when: bench_way == 'trees'
"""
REMOTE = "/tmp/graceful-uwsgi-ship-bench"


def make_tree(root: str, files: int) -> None:
    for index in range(files):
        directory = os.path.join(root, "pkg%02d" % (index // 20))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "module%03d.py" % index), "w") as handle:
            handle.write(("# module %d\n" % index) + "VALUE = %r\n" % ("x" * 60) * 30)


def timed(lab: Lab, playbook: str, host: str, way: str, src: str, dest: str) -> float:
    start = time.monotonic()
    out = subprocess.run(["ansible-playbook", *lab.inventory_args, playbook, "-e", "bench_host=" + host,
                          "-e", "bench_way=" + way, "-e", "bench_src=" + src, "-e", "bench_dest=" + dest],
                         capture_output=True, text=True, env=lab.env(), timeout=1800, check=False)
    seconds = time.monotonic() - start
    if out.returncode:
        raise SystemExit("%s failed:\n%s" % (way, out.stdout[-3000:]))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--inventory", default=os.path.join(HERE, "..", "lab", "state", "inventory.yml"))
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    lab = Lab(args.inventory)
    host = lab.boxes[0]
    with tempfile.TemporaryDirectory(prefix="ship-bench.") as scratch:
        src = os.path.join(scratch, "code")
        make_tree(src, args.files)
        playbook = os.path.join(scratch, "ship.yml")
        with open(playbook, "w") as handle:
            handle.write(PLAYBOOK)
        try:
            baseline = timed(lab, playbook, host, "none", src, REMOTE + "/none")
            rows = []
            for way in ("trees", "copy"):
                dest = "%s/%s" % (REMOTE, way)
                first = timed(lab, playbook, host, way, src, dest)
                second = timed(lab, playbook, host, way, src, dest)
                shipped = lab.sh(host, "find %s -type f | wc -l" % dest).strip()
                rows.append((way, shipped, first - baseline, second - baseline))
        finally:
            lab.sh(host, "rm -rf %s" % REMOTE, check_rc=False)
    print("shipping %d files (%d directories) to %s; Ansible's start-up, %.1f s, left out" % (
        args.files, (args.files + 19) // 20, host, baseline))
    print("| way | files on the box | new directory | again (no change) |")
    print("|---|---|---|---|")
    for way, shipped, first, second in rows:
        print("| %s | %s | %.1f s | %.1f s |" % (way, shipped, first, second))
    print("copy / trees, new directory: %.1f" % (rows[1][2] / max(rows[0][2], 0.01)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
