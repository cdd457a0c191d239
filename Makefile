# One command to run, one to test. Both create ./.venv on first use (Python 3.11+ and a C compiler:
# llama-cpp-python builds llama.cpp from source once, 6-8 minutes; pip caches the wheel afterwards).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=
# llama.cpp is built for a portable CPU (AVX2, no AVX-512/AMX) instead of -march=native: a native build on a
# CPU that reports AMX inside a VM that does not enable it dies with a general protection fault at the first
# request (seen on this project's CI machines). Set LLAMA_CMAKE_ARGS= to build natively.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: up test lint check clean

up: $(VENV)/.installed          ## serve the default stack (SmolLM2 on llama.cpp) at http://127.0.0.1:8000/v1; ARGS="--port 8080"
	$(BIN)/servestack up $(ARGS)

test: $(VENV)/.installed-test   ## lint, type-check and run the whole test suite
	$(BIN)/ruff check src tests bench setup.py packaging
	$(BIN)/ruff format --check src tests bench setup.py packaging
	$(BIN)/mypy
	$(BIN)/pytest -q

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "servestack needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.python pyproject.toml
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e '.[llamacpp]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.python pyproject.toml
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -e '.[test]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
