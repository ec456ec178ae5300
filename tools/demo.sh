#!/usr/bin/env bash
# The main job (`make demo`): build the lab, deploy the collection to it, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
INVENTORY=lab/state/inventory.yml
step() { printf '\n==> %s\n' "$*"; }

step "Lab: ${LAB_ROUTERS:-2} HTTP routers, ${LAB_APPS:-2} app boxes (Debian bookworm, podman, systemd)"
python3 lab/lab.py up
eval "$(python3 lab/lab.py env | sed 's/^/export /')"

step "Deploy playbooks/site.yml to the lab"
if [ -f playbooks/site.yml ]; then
  ansible-playbook -i "$INVENTORY" playbooks/site.yml
else
  echo "demo: playbooks/site.yml does not exist yet: nothing to deploy"
fi

step "Show the lab"
python3 lab/lab.py status
echo
ansible -i "$INVENTORY" all -m ansible.builtin.ping
echo
echo "inventory: $INVENTORY"
echo "remove the lab with: make lab-down"
