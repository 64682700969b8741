# Two commands: `make demo` (set up + serve the demo) and `make test` (set up + run every test).
VENV ?= .venv
PY := $(VENV)/bin/python
# On these machines torch==2.13.0 is a CPU wheel on disk; elsewhere set TORCH_SPEC to what you use.
TORCH_SPEC ?= torch==2.13.0
IMAGES ?=
PYTEST_ARGS ?=

.PHONY: setup demo test check format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/tastegraph demo $(if $(IMAGES),--images $(IMAGES),)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

check: setup
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
