# Two commands on a fresh machine: `make demo` and `make test`. Every target bootstraps the
# environment itself (uv via pip when missing, then `uv sync` from the committed lock).
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen
export DAGSTER_HOME ?= $(CURDIR)/data/dagster
# Installs precompile bytecode: where PYTHONDONTWRITEBYTECODE=1 is set (CI, these machines) every
# process would otherwise recompile every module it imports (measured: 4.2 s a process).
export UV_COMPILE_BYTECODE := 1
UI_CMD ?= $(RUN) dagster dev -w workspace.yaml -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

.PHONY: setup demo test test-slow test-ui bench lint format ui clean cluster-setup cluster-demo cluster-start cluster-stop

.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-groups
	$(RUN) python -m compileall -q obpipeline
	@touch $@

setup: .venv/.synced

demo: setup
	$(RUN) obpipeline demo

test: setup
	$(RUN) pytest -q -n 2 --dist loadfile

test-slow: setup
	$(RUN) pytest -q -m slow

# The browser test drives Debian's chromium (Playwright may not download a browser here):
# installed with apt-get when missing; screenshots land in data/screenshots/.
test-ui: setup
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser test (apt-get)"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) \
			apt-get install -y -qq --no-install-recommends chromium; }
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(RUN) pytest -q -m slow obpipeline_tests/test_dagster_browser.py

bench: setup
	$(RUN) python bench/run.py

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean:
	rm -rf data/lake data/bench data/demo

ui: setup
	@mkdir -p "$(DAGSTER_HOME)"
	@cp -u dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	@echo "Dagster UI on http://127.0.0.1:$${DAGSTER_PORT:-3000} (webserver + daemon, DAGSTER_HOME=$(DAGSTER_HOME)); Ctrl-C or SIGTERM stops both"
	@# make does not pass SIGTERM on to its recipe: the shell stops the server when make is gone.
	@# Beside it, the HTML fidelity reports at reports.url (the UI's report links: defs/reports.py).
	@# `set -m`: a background command of a shell without job control starts with SIGINT ignored,
	@# and `dagster dev` maps SIGTERM to its SIGINT handler: it would ignore both, never stop.
	@set -m; $(UI_CMD) & pid=$$!; \
	$(RUN) python -m obpipeline.defs.reports & rpid=$$!; \
	stop() { kill -TERM $$pid $$rpid 2>/dev/null; wait $$pid; }; \
	trap 'stop; exit 143' TERM INT HUP; \
	while kill -0 $$pid 2>/dev/null; do \
		kill -0 $$PPID 2>/dev/null || { stop; exit 143; }; \
		sleep 1 & wait $$!; \
	done; \
	kill -TERM $$rpid 2>/dev/null; \
	wait $$pid

# The cluster on this machine (docs/CLUSTER.md): PostgreSQL and Redis from Debian's packages,
# the `cluster` extra (dagster-postgres, dagster-celery, dagster-k8s, obstore, moto), then
# scripts/cluster/cluster.py starts, backfills 2 instruments x 3 days, stops; last line: JSON.
CLUSTER_APT := $(if $(wildcard /usr/lib/postgresql/*/bin/pg_ctl),,postgresql) $(if $(shell command -v redis-server 2>/dev/null),,redis-server)

cluster-setup: setup
	@if [ -n "$(strip $(CLUSTER_APT))" ]; then \
		echo "installing Debian packages: $(strip $(CLUSTER_APT))"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CLUSTER_APT); \
	fi
	$(UV) sync --frozen --all-groups --extra cluster

cluster-demo: cluster-setup
	$(RUN) --extra cluster python scripts/cluster/cluster.py demo

cluster-start: cluster-setup
	$(RUN) --extra cluster python scripts/cluster/cluster.py start

cluster-stop:
	$(RUN) --extra cluster python scripts/cluster/cluster.py stop
