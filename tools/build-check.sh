#!/usr/bin/env bash
# Build the collection tarball, install it with ansible-galaxy into a fresh
# collections path and check that graceful.uwsgi.* names resolve from there
# (modules and other plugins with ansible-doc, roles and playbooks with
# ansible-playbook --syntax-check), not from the working tree.
#
# Usage: tools/build-check.sh [DEST]   (DEST: where to install; default: a temp dir)
# Prints the tarball path; the installed copy stays in DEST when given.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# One build directory per toolchain: make test runs the sanity rows of two
# toolchains side by side, and each starts by emptying its own.
BUILD=$ROOT/.cache/build/${TOOLCHAIN:-default}

die() { echo "build-check: error: $*" >&2; exit 1; }

if [ $# -ge 1 ]; then
  DEST=$1
  rm -rf "$DEST"
  mkdir -p "$DEST"
else
  DEST=$(mktemp -d)
  trap 'rm -rf "$DEST"' EXIT
fi

rm -rf "$BUILD"
ansible-galaxy collection build --output-path "$BUILD" >/dev/null || die "ansible-galaxy collection build failed"
tarball=$(ls "$BUILD"/graceful-uwsgi-*.tar.gz)
echo "build-check: built ${tarball#"$ROOT"/} ($(du -h "$tarball" | cut -f1))"

# Resolve names only from DEST: no repository ansible.cfg, no working-tree symlink.
: >"$DEST/ansible.cfg"
export ANSIBLE_CONFIG=$DEST/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$DEST
cd "$DEST"
ansible-galaxy collection install --force -p "$DEST" "$tarball" >/dev/null 2>&1 \
  || die "ansible-galaxy collection install $tarball failed"
installed=$DEST/ansible_collections/graceful/uwsgi
ansible-galaxy collection list graceful.uwsgi 2>/dev/null | grep -q "^graceful.uwsgi " \
  || die "graceful.uwsgi is not listed after installing the tarball into $DEST"

checked=0
fail() { echo "build-check: FAILED: $*" >&2; failed=1; }
failed=0
# Plugin directories map to ansible-doc types (plugins/modules -> module...).
for dir in "$installed"/plugins/*/; do
  kind=$(basename "$dir")
  case "$kind" in
    module_utils|doc_fragments|plugin_utils) continue ;;
    modules) type=module ;;
    *) type=${kind%s} ;;
  esac
  # A plugin is documented in its own .py file, or (a filter file that holds
  # several filters) in a <name>.yml next to it, as ansible-core's own are.
  for file in "$dir"*.py "$dir"*.yml; do
    [ -e "$file" ] || continue
    name=$(basename "${file%.*}")
    [ "$name" != __init__ ] || continue
    case "$file" in
      *.py) [ -e "$dir$name.yml" ] || grep -q '^DOCUMENTATION = ' "$file" || continue ;;
    esac
    # ansible-doc exits 0 with a warning for a name it cannot find: check its JSON.
    if ansible-doc --json -t "$type" "graceful.uwsgi.$name" 2>"$DEST/doc.err" \
        | python3 -c 'import json, sys; sys.exit(sys.argv[1] not in json.load(sys.stdin))' "graceful.uwsgi.$name"; then
      checked=$((checked + 1))
    else
      fail "ansible-doc -t $type graceful.uwsgi.$name: $(tail -n 1 "$DEST/doc.err") (not found in the installed tarball)"
    fi
  done
done
for role in "$installed"/roles/*/; do
  [ -d "$role" ] || continue
  name=$(basename "$role")
  printf -- '- name: Resolve graceful.uwsgi.%s\n  hosts: localhost\n  gather_facts: false\n  roles:\n    - graceful.uwsgi.%s\n' \
    "$name" "$name" >"$DEST/role-$name.yml"
  if ansible-playbook -i localhost, --syntax-check "$DEST/role-$name.yml" >/dev/null 2>"$DEST/role.err"; then
    checked=$((checked + 1))
  else
    fail "role graceful.uwsgi.$name: $(grep -v '^\[WARNING' "$DEST/role.err" | tail -n 1)"
  fi
done
for playbook in "$installed"/playbooks/*.yml; do
  [ -e "$playbook" ] || continue
  name=$(basename "$playbook" .yml)
  if ansible-playbook -i localhost, --syntax-check "graceful.uwsgi.$name" >/dev/null 2>"$DEST/play.err"; then
    checked=$((checked + 1))
  else
    fail "playbook graceful.uwsgi.$name: $(grep -v '^\[WARNING' "$DEST/play.err" | tail -n 1)"
  fi
done
rm -f "$DEST"/*.err "$DEST"/role-*.yml "$DEST/ansible.cfg"
[ "$failed" -eq 0 ] || exit 1
echo "build-check: $checked graceful.uwsgi.* name(s) resolved from the installed tarball"
