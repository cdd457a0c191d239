# One command to run, one to test. Both create ./.venv on first use (Python 3.11+ and a C compiler:
# llama-cpp-python builds llama.cpp from source once, 6-8 minutes; pip caches the wheel afterwards).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: up test lint check clean

up: $(VENV)/.installed          ## serve the default stack (SmolLM2 on llama.cpp) at http://127.0.0.1:8000/v1
	$(BIN)/servestack up

test: $(VENV)/.installed-test   ## lint, type-check and run the whole test suite
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "servestack needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.python pyproject.toml
	$(BIN)/pip install -e '.[llamacpp]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.python pyproject.toml
	$(BIN)/pip install -e '.[test]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
