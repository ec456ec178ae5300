#!/usr/bin/env bash
# Check the changelog fragments and regenerate CHANGELOG.rst from them.
#
# The fragments in changelogs/fragments/ describe the release being prepared
# (galaxy.yml's version).  This renders them as that release in a scratch copy,
# so CHANGELOG.rst previews it while the fragments stay in place; cutting a
# real release is `antsibull-changelog release` in the repository (see
# DEVELOPERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
antsibull-changelog lint
version=$(python3 -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copy="$scratch/ansible_collections/graceful/uwsgi"
mkdir -p "$copy"
cp -r galaxy.yml changelogs meta "$copy/"
[ ! -d plugins ] || cp -r plugins "$copy/"
(cd "$copy" && antsibull-changelog release --version "$version" >/dev/null)
cp "$copy/CHANGELOG.rst" CHANGELOG.rst
echo "changelog: CHANGELOG.rst previews $version from $(find changelogs/fragments -name '*.y*ml' | wc -l) fragment(s)"
