#!/usr/bin/env bash
# The main job (`make demo`): build the lab, deploy the collection to it, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
INVENTORY=lab/state/inventory.yml
step() { printf '\n==> %s\n' "$*"; }

step "Lab: ${LAB_ROUTERS:-2} HTTP routers, ${LAB_APPS:-2} app boxes (Debian bookworm, podman, systemd)"
python3 lab/lab.py up
eval "$(python3 lab/lab.py env | sed 's/^/export /')"

step "Deploy playbooks/site.yml to the lab (apps: tests/lab_vars.yml)"
export GRACEFUL_UWSGI_ROOT=$PWD
ansible-playbook -i "$INVENTORY" playbooks/site.yml -e @tests/lab_vars.yml

step "Show the lab"
python3 lab/lab.py status

step "Requests through both HTTP routers"
python3 tools/show_cluster.py --inventory "$INVENTORY"
echo
echo "inventory: $INVENTORY"
echo "release a new version: ansible-playbook -i $INVENTORY playbooks/rolling_reload.yml -e @tests/lab_vars.yml -e app_version=2"
echo "remove the lab with: make lab-down"
