# flexinfra: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit galera-test galera-campaign galera-bench sandbox-test campaign lint crds venv sandbox-up sandbox-down sandbox-wipe sandbox-status bench bench-compare clean

# The development venv: the operator, its tests, and the sandbox (a separate distribution in
# sandbox/, not in the operator's wheel or image). The OpenStack services get their own venv,
# cached, from `sandbox up`.
$(STAMP): pyproject.toml sandbox/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' -e ./sandbox
	@touch $(STAMP)

venv: $(STAMP)

## make demo: sandbox up, operator running, examples applied, what was built printed
demo: $(STAMP)
	$(BIN)/flexinfra demo

## make test: lint, unit tests, real Galera in fxgt-* namespaces, then the sandbox (brought up
## if needed) and the tests that need it
test: lint unit galera-test sandbox-test

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/pytest -m "not sandbox and not e2e and not galera" -q

# the node agent and decide() on real MariaDB + galera-4 (root; ~2 min; no sandbox needed)
galera-test: $(STAMP)
	bash sandbox/install-packages.sh
	$(BIN)/pytest -m galera -q

# GaleraCluster on the sandbox: every failure scenario (kill -9 of the writer, of a
# non-writer, of two nodes; full outage; partition; a server replaced), figures printed
# (~15 min; the default e2e run holds a sample)
galera-campaign: $(STAMP)
	FLEXINFRA_GALERA_CAMPAIGN=1 $(BIN)/pytest tests/e2e/test_galera.py -q -s

# GaleraCluster figures: create -> Ready, writer failover, full outage, agent RSS
galera-bench: $(STAMP)
	$(BIN)/python bench/galera.py

sandbox-test: $(STAMP)
	$(BIN)/flexinfra sandbox up
	$(BIN)/pytest -m "(sandbox or e2e) and not campaign" -q

## make campaign: the fault campaign (bad input, faults on every write, SIGKILLs, namespace
## deletion; ~15 min), with its totals printed at the end
campaign: $(STAMP)
	$(BIN)/flexinfra sandbox up
	$(BIN)/pytest -m campaign -q -s

crds: $(STAMP)
	$(BIN)/flexinfra crds --out crds

sandbox-up: $(STAMP)
	$(BIN)/flexinfra sandbox up

sandbox-down: $(STAMP)
	$(BIN)/flexinfra sandbox down

sandbox-wipe: $(STAMP)
	$(BIN)/flexinfra sandbox down --wipe

sandbox-status: $(STAMP)
	$(BIN)/flexinfra sandbox status

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/dataplane.py

# the operator before the one-machinery refactor (issue 8) against this tree, in one run
BENCH_BEFORE ?= 2d18de3
bench-compare: $(STAMP)
	$(BIN)/python bench/run.py --sites 10 --compare $(BENCH_BEFORE) \
		--compare HEAD:FLEXINFRA_MEMBER_HEALTH=ignored --compare HEAD

clean:
	rm -rf $(VENV) build *.egg-info
