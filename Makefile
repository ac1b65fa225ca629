# Two set-up commands, both from a fresh clone with only python3, pip and make:
#   make run    start the mirror with its embedded defaults
#   make test   lint, type-check and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint image-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package's version lives in src/hubmirror/__init__.py: reinstall when it changes.
$(VENV)/.installed-run: pyproject.toml src/hubmirror/__init__.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml src/hubmirror/__init__.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/hubmirror serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src tests

test: lint
	$(BIN)/pytest -n 2

# The container image, built on a debootstrapped bookworm and checked in a chroot
# (not part of `make test`): needs root, podman and debootstrap; .ci/run installs them.
image-test: $(VENV)/.installed-test
	PYTHON=$(BIN)/python tests/image/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (not part of `make test`): needs curl, nginx, wrk and aria2c from apt.
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run
