# Two commands: `make run` and `make test`. Both build .venv from the lock file first.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test lint format install clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/hookline serve

lint: $(BIN)/.installed
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

format: $(BIN)/.installed
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
