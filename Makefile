# Two commands: `make run` and `make test`. Both build .venv from the lock files first: `run`
# from requirements.lock alone (what hookline needs), `test` adds requirements-dev.lock.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint format install install-dev chromium clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed requirements-dev.lock
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	touch $@

install: $(BIN)/.installed

install-dev: $(BIN)/.dev-installed

# Debian's Chromium, which the browser tests (tests/browser) drive through Playwright; .ci/run
# installs it, and locally those tests skip without it. Never `playwright install`.
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)

run: $(BIN)/.installed
	$(BIN)/hookline serve

lint: $(BIN)/.dev-installed
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

# Most tests wait on sockets and child processes, so three at a time fill two cores; those that
# restart the shared PostgreSQL or measure timing run alone afterwards.
test: lint
	$(BIN)/pytest -n 3 --dist loadfile -m "not serial"
	$(BIN)/pytest -m serial

format: $(BIN)/.dev-installed
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
