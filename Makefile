# ocs-core: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv when missing and installs the project with what it needs (crossbar included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install clean bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,router,plot]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) clients/examples/demo.py

bench: $(STAMP)
	$(PY) bench/rpc.py
	$(PY) bench/obe.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
