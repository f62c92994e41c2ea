# Nubo: `make run` serves it, `make test` tests it. Both install what is missing
# (Debian packages as root, .venv from requirements.txt, npm packages into
# static/vendor) and are fast the second time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

export NUBO_INSTANCE_PATH ?= $(CURDIR)/instance
export NUBO_BIND ?= 127.0.0.1
export NUBO_PORT ?= 8080
export NUBO_CONSOLE_PORT ?= 6080
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test bytecode setup setup-test sysdeps sysdeps-test migrate bootstrap clean bench lint lab lab-down

run: setup migrate bootstrap bytecode
	@echo "Nubo on http://$(NUBO_BIND):$(NUBO_PORT)/  (Ctrl-C stops all processes)"
	@# Prometheus metrics of every process are merged through this directory (emptied at start).
	@rm -rf $(NUBO_INSTANCE_PATH)/prometheus && mkdir -p $(NUBO_INSTANCE_PATH)/prometheus
	PROMETHEUS_MULTIPROC_DIR=$(NUBO_INSTANCE_PATH)/prometheus $(BIN)/honcho start

setup: sysdeps $(VENV)/.installed static/vendor/.installed

setup-test: sysdeps-test $(VENV)/.installed-test static/vendor/.installed

sysdeps:
	@scripts/sysdeps.sh run

sysdeps-test:
	@scripts/sysdeps.sh test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.txt
	@touch $@

static/vendor/.installed: package.json package-lock.json scripts/vendor.sh
	npm ci --no-audit --no-fund --loglevel=error
	scripts/vendor.sh
	@touch $@

migrate: setup
	$(FLASK) db upgrade

bootstrap: setup
	$(FLASK) bootstrap

# Tests start a real libvirtd; DB-facing tests also run on every URL in
# NUBO_TEST_DATABASE_URLS (space separated). Unset, it is filled with the local
# PostgreSQL and MariaDB that answer on 127.0.0.1:5432/3306 (and NUBO_TEST_REDIS_URL
# with Redis on 6379), so a developer's `make test` is CI's; set it empty to test
# on SQLite only, or to other URLs (.ci/run sets both explicitly).
PROBE = timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$(1)' 2>/dev/null
# Three xdist workers on two cores: the browser, stack and guest tests wait a good part of
# their time (a page, a boot, a poll interval), so a third worker fills the idle core time
# (a clean-clone run on a 2-vCPU machine: 22:52 against 24:35 with two). NUBO_TEST_WORKERS=2
# (or 1) for a busier machine.
TEST_WORKERS ?= $(or $(NUBO_TEST_WORKERS),3)
test: setup-test
	@$(MAKE) -s bytecode
	@scripts/libvirtd.sh || echo "warning: no libvirtd; libvirt tests will fail"
	@if [ -z "$${NUBO_TEST_DATABASE_URLS+set}" ]; then \
	  urls=""; \
	  $(call PROBE,5432) && urls="postgresql+psycopg://postgres@127.0.0.1:5432/test"; \
	  $(call PROBE,3306) && urls="$${urls:+$$urls }mysql+pymysql://root@127.0.0.1:3306/test"; \
	  export NUBO_TEST_DATABASE_URLS="$$urls"; \
	fi; \
	if [ -z "$${NUBO_TEST_REDIS_URL+set}" ] && $(call PROBE,6379); then \
	  export NUBO_TEST_REDIS_URL=redis://127.0.0.1:6379/0; \
	fi; \
	echo "database servers: $${NUBO_TEST_DATABASE_URLS:-none (SQLite only)}; redis: $${NUBO_TEST_REDIS_URL:-none}"; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# Nubo's modules compiled once (a process reads .pyc even under PYTHONDONTWRITEBYTECODE, which
# only stops it writing them): each of the ~7 processes a stack starts then skips ~0.3 s of
# compiling, and so does every test's `flask` command.
bytecode:
	@$(BIN)/python -m compileall -q -j0 app tests scripts extensions wsgi.py > /dev/null

# A lab of two real libvirt hosts on this machine, for demos and development (README:
# "Lab: several real hosts on one machine"); `make lab-down` removes it.
lab: sysdeps-test
	@scripts/lab.sh up 2

lab-down:
	@scripts/lab.sh down

bench: setup-test
	@echo "see bench/README.md"

clean:
	rm -rf $(VENV) node_modules static/vendor
