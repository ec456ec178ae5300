# graceful.uwsgi: set-up, lab, tests.  `make help` lists the targets.
# Every target installs what it needs that is missing (apt packages, .venv).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(CURDIR)
PYTHON ?= python3
VENV := $(ROOT)/.venv
COLLECTIONS := $(ROOT)/.cache/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/graceful/uwsgi
LAB := $(ROOT)/lab/lab.py
INVENTORY := $(ROOT)/lab/state/inventory.yml

# The toolchain of lint, sanity, unit, integration, build-check and molecule (on
# .venv and core-2.21, the toolchains with Molecule): empty for .venv
# (ansible-core 2.19, Python 3.11), or one of tests/toolchains/ (make unit
# TOOLCHAIN=core-2.21), made on demand in .cache/toolchains/NAME.  `make test`
# runs them all (tools/run-tiers.py).
TOOLCHAIN ?=
export TOOLCHAIN
ifeq ($(TOOLCHAIN),)
TOOLCHAIN_BIN := $(VENV)/bin
TOOLCHAIN_VENV := $(VENV)/.installed
else
ifeq ($(wildcard tests/toolchains/$(TOOLCHAIN).txt),)
$(error TOOLCHAIN=$(TOOLCHAIN): no tests/toolchains/$(TOOLCHAIN).txt; known: $(basename $(notdir $(wildcard tests/toolchains/*.txt))))
endif
TOOLCHAIN_BIN := $(ROOT)/.cache/toolchains/$(TOOLCHAIN)/bin
TOOLCHAIN_VENV := $(ROOT)/.cache/toolchains/$(TOOLCHAIN)/.installed
endif
# The toolchain's tools first, and .venv's not at all on another toolchain
# (make test's own PATH has it); graceful.uwsgi.* resolves from the working tree.
export PATH := $(TOOLCHAIN_BIN):$(subst $(VENV)/bin:,,$(PATH))
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# pytest-xdist workers of the integration tier: each test has its own loopback
# box on its own ports (tests/support/uwsgi_box.py: room for six workers).  Four
# at a time: much of a test is waiting (drains, announces, timeouts); two took
# 411 s, four 287 to 311 s, one 655 s.
INTEGRATION_JOBS ?= 4
# podman's settings for this machine (CONTAINERS_CONF where its defaults fail),
# written by `lab/lab.py probe`; read at run time, so prefix commands with it.
LAB_ENV := set -a; [ ! -f lab/state/podman.env ] || . lab/state/podman.env; set +a;

.PHONY: help deps venv toolchain collection-link setup demo test lint sanity build-check \
	unit integration molecule lab-image lab-up lab-down lab-status changelog clean \
	bench-reload bench-release bench-fleet bench-router bench-ship

help:
	@echo "make demo         install what is missing, build the lab (2 routers, 2 app boxes), show it"
	@echo "make test         every test tier below on its toolchains, then a table of durations, results and counts"
	@echo "  make lint         ansible-lint --profile production, antsibull-docs lint-collection-docs"
	@echo "  make sanity       ansible-test sanity on the built collection (includes build-check)"
	@echo "  make unit         pytest tests/unit"
	@echo "  make integration  pytest tests/integration (real uWSGI on loopback)"
	@echo "  make molecule     molecule test, every scenario under extensions/molecule/ (SCENARIO=name: one; TOOLCHAIN=core-2.21: on that core)"
	@echo "make build-check  build the tarball, install it, resolve graceful.uwsgi.* from it"
	@echo "make lab-up | lab-down | lab-status | lab-image    the lab outside Molecule (LAB_APPS=3 for a third app box)"
	@echo "make bench-reload   vassal_reload on loopback: the app's restart, V = 4, 8, 16 vassals against the physical bound"
	@echo "make bench-release  a rolling release on the lab (after make demo; LAB_APPS=4 for four boxes): one box, then the fleet"
	@echo "make bench-fleet    the batches of a release of 2, 10 and 100 simulated boxes"
	@echo "make bench-ship     shipping a 500-file code directory to a lab box: copy against write_files' trees"
	@echo "make bench-router   requests per second through one HTTP router of the lab (wrk, 10 s)"
	@echo "make changelog    lint changelog fragments, regenerate CHANGELOG.rst"
	@echo "make setup        apt packages + .venv + collection symlink (done by the targets above)"
	@echo "make toolchain TOOLCHAIN=core-2.21   the venv of tests/toolchains/core-2.21.txt (done by the targets above;"
	@echo "                  TOOLCHAIN=name runs lint, sanity, unit, integration, build-check or molecule on it)"
	@echo "make clean        remove the lab, the venv and caches"

# ---- set-up ---------------------------------------------------------------

deps:
	@tools/deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: test-requirements.txt
	@PYTHON=$(PYTHON) tools/venv.sh

toolchain: $(TOOLCHAIN_VENV)

$(ROOT)/.cache/toolchains/%/.installed: tests/toolchains/%.txt
	@tools/toolchain.sh $*

collection-link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@[ "$$(readlink $(COLLECTION_LINK))" = "$(ROOT)" ] || ln -sfn $(ROOT) $(COLLECTION_LINK)

setup: deps venv collection-link

# ---- the main job ---------------------------------------------------------

demo: setup
	@tools/demo.sh

# ---- tests ----------------------------------------------------------------

test: setup
	@$(VENV)/bin/python tools/run-tiers.py

lint: toolchain collection-link
	ansible-lint
	@# antsibull-docs has its own pinned ansible-core: once, on the default toolchain.
	@[ -n "$(TOOLCHAIN)" ] || { echo tools/docs-lint.sh; tools/docs-lint.sh; }

sanity: toolchain
	tools/sanity.sh

build-check: toolchain
	tools/build-check.sh

unit: toolchain collection-link
	tools/pytest-tier.sh tests/unit

# The `ansible` bundle in core-2.21 (for Molecule) stays out of sight: the
# integration tests use ansible.builtin and graceful.uwsgi only.
integration: deps toolchain collection-link
	@$(LAB_ENV) ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false tools/pytest-tier.sh tests/integration -n $(INTEGRATION_JOBS) -rA --durations=8

molecule: deps toolchain collection-link
	tools/molecule.sh $(SCENARIO)

# ---- lab ------------------------------------------------------------------

lab-image: deps
	$(PYTHON) $(LAB) image

lab-up: deps venv collection-link
	$(PYTHON) $(LAB) up

lab-down:
	$(PYTHON) $(LAB) down

lab-status:
	$(PYTHON) $(LAB) status

# ---- benchmarks (they print their numbers; see README.md) -------------------

bench-reload: deps venv collection-link
	$(VENV)/bin/python benchmarks/reload_bench.py

bench-release: venv collection-link
	@$(LAB_ENV) $(VENV)/bin/python benchmarks/release_bench.py --inventory $(INVENTORY) $(BENCH_ARGS)

bench-ship: venv collection-link
	@$(LAB_ENV) $(VENV)/bin/python benchmarks/ship_bench.py --inventory $(INVENTORY) $(BENCH_ARGS)

bench-fleet: venv collection-link
	$(VENV)/bin/python benchmarks/fleet_sim.py

# Keep-alive GET / with a Host header, 2 threads x 16 connections, 10 s.
bench-router: deps venv
	@router=$$($(VENV)/bin/python -c 'import yaml,sys; inv=yaml.safe_load(open("$(INVENTORY)")); \
	  print(next(iter(inv["all"]["children"]["uwsgi_http_routers"]["hosts"].values()))["lab_ip"])' 2>/dev/null) \
	  || { echo "bench-router: no lab inventory; run make demo first" >&2; exit 1; }; \
	  wrk -t2 -c16 -d10s --timeout 5s -H 'Host: $(or $(HOST),hello.test)' "http://$$router/"

# ---- housekeeping ---------------------------------------------------------

changelog: venv
	tools/changelog.sh

clean:
	-$(PYTHON) $(LAB) down
	-$(PYTHON) $(LAB) down --molecule
	rm -rf $(VENV) .cache lab/cache lab/state tests/output
