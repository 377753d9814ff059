# Two commands on a fresh machine: `make up` runs the stack, `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make up` needs the runtime packages only; lint and tests add the test extras.
RUN_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: up test lint migrate install token chaos clean

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
up token migrate: export ENVIRONMENT ?= development

## Run the whole stack in the foreground (Ctrl-C stops it).
up: $(RUN_STAMP)
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

lint: $(STAMP)
	$(PY) -m ruff check services tests tools
	$(PY) -m ruff format --check services tests tools
	$(PY) -m mypy services tests tools

## Lint, then every test against real Redis and PostgreSQL.
test: lint
	@tools/ensure-services.sh redis postgres
	$(PY) -m pytest $(PYTEST_ARGS)

## Chaos suite (whole stack, mixed load, faults); the summary line comes last:
## make chaos [DURATION=60] [SEED=n]
DURATION ?= 60
chaos: $(STAMP)
	@tools/ensure-services.sh redis postgres
	$(PY) -m tools.chaos --duration $(DURATION) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
