# hardway.kubernetes: the two commands a newcomer needs are `make lab` and
# `make test`. Everything slow is cached under $(HARDWAY_CACHE), outside the
# clone, keyed by version; a machine without the cache builds it from scratch.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export HARDWAY_CACHE ?= $(HOME)/.cache/hardway
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-12)
VENV := $(HARDWAY_CACHE)/venv-$(REQ_HASH)
PY := $(VENV)/bin/python
COLLECTIONS := $(HARDWAY_CACHE)/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONPATH := $(COLLECTIONS)
WORKERS ?= 2
# Debian release of the lab hosts: bookworm (12) or trixie (13).
LAB_OS ?= bookworm
# Layout of the README's lab: single (one control plane) or ha (three control
# planes that are also the etcd members).
LAB ?= single
CONTROL_PLANES := $(if $(filter ha,$(LAB)),3,1)

.PHONY: help setup mirror lab lab-ha lab-addons lab-down lint sanity unit integration testbed molecule test test-extended bench cis conformance conformance-network clean-cache

help:
	@echo "make lab       three lab hosts in Docker with a working cluster (LAB_OS=trixie: Debian 13)"
	@echo "make lab-ha    the HA layout: three control planes (also etcd) and two workers (= make lab LAB=ha)"
	@echo "make lab-addons  on the lab: Pebble (ACME), then Traefik and cert-manager (see README)"
	@echo "make lab-down  remove the lab hosts and restore what the lab changed"
	@echo "make test      every test: linters, sanity, unit, integration, test bed, molecule, [sig-network] conformance"
	@echo "make test-extended  the scenarios outside make test's CI budget (upgrade from Kubernetes 1.36)"
	@echo "make conformance  the whole Kubernetes [Conformance] suite against the lab (after make lab)"
	@echo "make conformance-network  its [sig-network] tests on a lab set of their own (part of make test)"
	@echo "make bench     the benchmark (cold converge, re-run, addons, scale, PKI)"
	@echo "make cis       the CIS Kubernetes Benchmark (kube-bench) on the lab's hosts (after make lab)"

setup: $(VENV)/.done
	@tests/testbed/system-deps.sh
	@tests/testbed/setup-collections.sh "$(VENV)" "$(COLLECTIONS)"
	@python3 tests/testbed/lab.py docker

$(VENV)/.done: requirements.txt
	@echo "setup: Python virtualenv at $(VENV)"
	@python3 -m venv "$(VENV)"
	@"$(VENV)/bin/pip" install -q --upgrade pip
	@"$(VENV)/bin/pip" install -q -r requirements.txt
	@touch "$@"

mirror: setup
	@$(PY) tests/testbed/mirror.py build

lab: setup mirror
	@$(PY) tests/testbed/lab.py up --control-planes $(CONTROL_PLANES) --workers $(WORKERS) --os $(LAB_OS)
	@tests/testbed/deploy-lab.sh $(WORKERS) $(CONTROL_PLANES)

lab-ha:
	@$(MAKE) --no-print-directory lab LAB=ha

# The ingress and TLS addons on the README's lab (after `make lab`): Pebble,
# the lab's ACME server, on lab-cp1, then site.yml with both addons on.
lab-addons: setup mirror
	@$(PY) tests/testbed/pebble.py up --host lab-cp1 --address 172.29.0.11 --answer 172.29.0.21 \
	  --out $(HARDWAY_CACHE)/lab/pebble
	@HARDWAY_PEBBLE_DIR=$(HARDWAY_CACHE)/lab/pebble ansible-playbook -i inventories/lab/hosts.yml \
	  playbooks/site.yml -e @tests/testbed/addons-vars.yml

lab-down:
	@python3 tests/testbed/lab.py down

lint: setup
	ruff check .
	ansible-lint --profile production
	@echo "lint: ruff and ansible-lint passed"

sanity: setup
	@tests/testbed/sanity.sh

unit: setup
	$(PY) -m pytest -q tests/unit

# The integration tests bring up the bare lab set "itest" and leave it
# running between tests; it goes once they are done, passed or not.
integration: setup mirror
	@status=0; $(PY) -m pytest -q tests/integration || status=$$?; \
	  python3 tests/testbed/lab.py down --name itest; exit $$status

testbed: setup mirror
	$(PY) -m pytest -q tests/testbed

# On a failure, the failed tests' summary lines are printed again at the end,
# where a CI log's tail shows them (the whole output is in the log file).
MOLECULE_LOG := $(HARDWAY_CACHE)/logs/molecule.log
SHOW_FAILED = echo "molecule failed; the failed tests, from $(MOLECULE_LOG):"; \
	sed 's/\x1b\[[0-9;]*m//g; s/^ *│ *//' "$(MOLECULE_LOG)" \
	  | grep -E '^(FAILED|ERROR) [^-]|^E +[A-Za-z]|^fatal:|Executed: Failed' | tail -40 || true
molecule: setup mirror
	@$(PY) tests/testbed/lab.py image
	@mkdir -p "$(dir $(MOLECULE_LOG))"
	@status=0; COLUMNS=200 molecule test --all $(foreach s,$(EXTENDED_SCENARIOS),--exclude $(s)) 2>&1 \
	  | tee "$(MOLECULE_LOG)" || status=$$?; \
	  if [ $$status -ne 0 ]; then $(SHOW_FAILED); fi; exit $$status

test: setup mirror lint sanity unit integration testbed molecule conformance-network
	@echo "test: every suite passed"

# Scenarios outside make test's CI budget: they need older versions in the
# mirror (one more Go build of every Kubernetes binary, etcd and containerd).
EXTENDED_SCENARIOS := upgrade
UPGRADE_FROM := kubernetes@1.36.5 etcd@3.6.15 containerd@2.3.6
test-extended: setup mirror
	@$(PY) tests/testbed/mirror.py build $(UPGRADE_FROM)
	@$(PY) tests/testbed/lab.py image
	@mkdir -p "$(dir $(MOLECULE_LOG))"
	@status=0; for s in $(EXTENDED_SCENARIOS); do \
	  COLUMNS=200 molecule test -s $$s 2>&1 | tee "$(MOLECULE_LOG)" || { status=$$?; break; }; done; \
	  if [ $$status -ne 0 ]; then $(SHOW_FAILED); fi; exit $$status

bench: setup mirror
	@$(PY) tests/bench/bench.py

# The CIS Kubernetes Benchmark on the lab (after make lab): kube-bench built
# from the Go module proxy, run on every lab host with the checks for what it
# runs. Reports and the summary: $(HARDWAY_CACHE)/cis/lab/.
cis: setup mirror
	@$(PY) tests/testbed/cis.py build
	@$(PY) tests/testbed/cis.py run

# The Kubernetes conformance suite, offline: e2e.test and every image it uses
# are built here, the images go to the lab set's registry, and the hosts pull
# registry.k8s.io's images from it (containerd_registry_mirrors). Reports and
# the summary: $(HARDWAY_CACHE)/conformance/runs/.
CONFORMANCE_NODES ?= 4
conformance: setup mirror
	@$(PY) tests/testbed/conformance.py run --name lab --nodes $(CONFORMANCE_NODES)

# The [sig-network] conformance tests on their own lab set, brought up and
# taken down around them (make test runs this).
conformance-network: setup mirror
	@$(PY) tests/testbed/conformance.py run --name conf --subset network --up --down --nodes $(CONFORMANCE_NODES)
