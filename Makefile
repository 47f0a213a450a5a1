# One command each on a fresh clone: `make test`, `make reproduce-all`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint reproduce-all bench clean

setup: $(STAMP)

# torch==2.13.0 first: the CPU build on this disk. A looser requirement would pull a CUDA build.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

reproduce-all: $(STAMP)
	$(PY) experiments/reproduce_all.py $(if $(DATA),--data $(DATA),)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) results .pytest_cache
