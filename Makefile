# Two commands on a fresh machine: `make up` runs the stack, `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make up` needs the runtime packages only; lint and tests add the test extras.
RUN_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

# --- observability (issue 12) ---------------------------------------------------------------
# celery-exporter (PyPI prometheus-exporter-celery) pins redis<6 and kombu 5.7 needs
# redis>=6.1, so it lives in a virtualenv of its own, with celery/kombu of the 5.6 line (the
# last to accept redis 5; same message and event formats); `make up` runs it, tests scrape it.
CELERY_EXPORTER_VERSION := 0.11.2
CELERY_EXPORTER_PINS := 'prometheus-exporter-celery==$(CELERY_EXPORTER_VERSION)' 'celery==5.6.3' 'kombu==5.6.2'
CELERY_EXPORTER_VENV := .venv-celery-exporter
CELERY_EXPORTER_STAMP := $(CELERY_EXPORTER_VENV)/.installed-$(CELERY_EXPORTER_VERSION)
# It supports Python 3.11 and 3.12 only.
CELERY_EXPORTER_PYTHON ?= $(PYTHON)
# --- end of observability --------------------------------------------------------------------
# The chart tests validate with the official `kubernetes` client's models, which need
# python-dateutil>=3 (celery pins 2.x): a virtualenv of their own.
KUBE_VENV := .venv-kube
KUBE_STAMP := $(KUBE_VENV)/.installed-37.0.2
# np-guard's network-config-analyzer pins its dependencies exactly (PyYAML, networkx, lxml):
# a virtualenv of its own. tests/chart/test_network_paths.py runs its `nca` command.
NCA_VERSION := 2.1.0
NCA_VENV := .venv-nca
NCA_STAMP := $(NCA_VENV)/.installed-$(NCA_VERSION)
# checkov (make lint scans the rendered chart) pins dozens of packages: its own virtualenv too.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

.PHONY: up test test-model-long lint migrate install token chaos bench clean celery-exporter dashboards kube-models nca checkov test-es-rest

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11 (or newer)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

install: $(STAMP)

# Settings fail closed (production unless told otherwise): the local commands say development.
up token migrate bench: export ENVIRONMENT ?= development

## Run the whole stack in the foreground (Ctrl-C stops it).
up: $(RUN_STAMP)
	@$(MAKE) --no-print-directory celery-exporter || echo "celery-exporter could not be built (see above); the stack runs without it"
	@tools/ensure-services.sh redis
	$(PY) -m services.core.tasklog.migrate upgrade
	$(PY) tools/devstack.py

## Print a development token (last line): make token [USER_ID=u CUSTOMER_ID=c ROLE=user]
USER_ID ?= dev-admin
CUSTOMER_ID ?= dev
ROLE ?= admin
token: $(RUN_STAMP)
	@$(PY) -m services.core.auth.cli --user-id '$(USER_ID)' --customer-id '$(CUSTOMER_ID)' --role '$(ROLE)'

migrate: $(RUN_STAMP)
	$(PY) -m services.core.tasklog.migrate upgrade

lint: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m ruff check services tests tools
	$(PY) -m ruff format --check services tests tools
	$(PY) -m mypy services tests tools
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m tools.chartscan --checkov $(CHECKOV_VENV)/bin/checkov

## Lint, then every test against real Redis and PostgreSQL.
test: lint $(CELERY_EXPORTER_STAMP) $(KUBE_STAMP) $(NCA_STAMP)
	@tools/ensure-services.sh redis postgres prometheus alertmanager wrk
	$(PY) -m pytest $(PYTEST_ARGS)

## The model-based ordering test at a nightly size (hours):
## make test-model-long [MODEL_EXAMPLES=1000] [MODEL_STEPS=14] [MODEL_SEED=n]
MODEL_EXAMPLES ?= 1000
MODEL_STEPS ?= 14
test-model-long: $(STAMP)
	@tools/ensure-services.sh redis postgres
	MODEL_EXAMPLES=$(MODEL_EXAMPLES) MODEL_STEPS=$(MODEL_STEPS) $(if $(MODEL_SEED),MODEL_SEED=$(MODEL_SEED)) \
		$(PY) -m pytest -p no:cacheprovider -s tests/integration/test_ordering_model.py

## Elasticsearch's YAML REST tests: against the stand-in, and against the cluster at
## ELASTICSEARCH_URL when set (an empty, disposable one); the summary comes last.
test-es-rest: $(STAMP)
	$(PY) -m pytest tests/es_rest $(PYTEST_ARGS)

## Chaos suite (whole stack, mixed load, faults); the summary line comes last:
## make chaos [DURATION=60] [SEED=n]
DURATION ?= 60
chaos: $(STAMP)
	@tools/ensure-services.sh redis postgres
	$(PY) -m tools.chaos --duration $(DURATION) $(if $(SEED),--seed $(SEED))

## Benchmarks (tools/bench); the table comes last, results and plots under var/bench/:
## make bench [BENCH_ARGS="--only backlog --backlog-n 100000"]
bench: $(STAMP)
	@tools/ensure-services.sh redis postgres wrk
	$(PY) -m tools.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CELERY_EXPORTER_VENV) $(KUBE_VENV) $(NCA_VENV) $(CHECKOV_VENV) var .pytest_cache .mypy_cache .ruff_cache

# --- observability (issue 12) ---------------------------------------------------------------
$(CELERY_EXPORTER_STAMP):
	@$(CELERY_EXPORTER_PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else "celery-exporter runs on Python 3.11 or 3.12; set CELERY_EXPORTER_PYTHON=python3.12")'
	@test -x $(CELERY_EXPORTER_VENV)/bin/python || $(CELERY_EXPORTER_PYTHON) -m venv $(CELERY_EXPORTER_VENV)
	$(CELERY_EXPORTER_VENV)/bin/python -m pip install -q $(CELERY_EXPORTER_PINS)
	@touch $@

## The celery-exporter virtualenv (.venv-celery-exporter).
celery-exporter: $(CELERY_EXPORTER_STAMP)

## Regenerate the Grafana dashboards (charts/durable-writes/files/dashboards/*.json) and the
## chart's AlertmanagerConfig spec (from k8s/monitoring/alertmanager.yaml).
dashboards: $(STAMP)
	$(PY) -m tools.dashboards
	$(PY) -m tools.monitoring
# --- end of observability --------------------------------------------------------------------

# --- chart (issue 13) ------------------------------------------------------------------------
$(KUBE_STAMP):
	@test -x $(KUBE_VENV)/bin/python || $(PYTHON) -m venv $(KUBE_VENV)
	$(KUBE_VENV)/bin/python -m pip install -q 'kubernetes==37.0.2'
	@touch $@

## The virtualenv of the `kubernetes` client's models (.venv-kube), for tests/chart.
kube-models: $(KUBE_STAMP)

$(NCA_STAMP):
	@test -x $(NCA_VENV)/bin/python || $(PYTHON) -m venv $(NCA_VENV)
	$(NCA_VENV)/bin/python -m pip install -q 'network-config-analyzer==$(NCA_VERSION)'
	@touch $@

## The virtualenv of network-config-analyzer (.venv-nca), for tests/chart/test_network_paths.py.
nca: $(NCA_STAMP)

$(CHECKOV_STAMP):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	@touch $@

## The virtualenv of checkov (.venv-checkov), for `make lint`'s scan of the rendered chart.
checkov: $(CHECKOV_STAMP)
