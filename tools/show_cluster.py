"""Show the lab serving: requests through every HTTP router for every domain, and the routers' tables.

    python3 tools/show_cluster.py [--inventory lab/state/inventory.yml] [--requests 4]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))

from release_cases import DOMAINS, Lab  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--inventory", default=os.path.join(ROOT, "lab", "state", "inventory.yml"))
    parser.add_argument("--requests", type=int, default=4)
    args = parser.parse_args()
    lab = Lab(args.inventory)
    failed = 0
    boxes = set()
    for router in lab.routers:
        print("%s (%s): subscription table" % (router, lab.ip[router]))
        for key, nodes in sorted(lab.router_nodes(router).items()):
            print("    %-16s -> %s" % (key, ", ".join(sorted(nodes))))
        for domain in DOMAINS:
            for _unused in range(args.requests):
                conn = http.client.HTTPConnection(lab.ip[router], 80, timeout=10)
                try:
                    conn.request("GET", "/", headers={"Host": domain})
                    response = conn.getresponse()
                    body = response.read().decode(errors="replace").strip()
                    if response.status != 200:
                        failed += 1
                    else:
                        boxes.add(body.split()[3])
                    print("    GET http://%s/ Host: %-15s -> %d %s" % (lab.ip[router], domain, response.status, body))
                except OSError as exc:
                    failed += 1
                    print("    GET http://%s/ Host: %-15s -> %s" % (lab.ip[router], domain, exc))
                finally:
                    conn.close()
    print("served through %d routers by %d boxes (%s); %d failed"
          % (len(lab.routers), len(boxes), ", ".join(sorted(boxes)), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
