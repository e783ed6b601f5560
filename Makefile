# ocs-core: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv when missing and installs the project with what it needs (crossbar included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install clean bench chaos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,router,plot]'
	touch $(STAMP)

# The real iblutil (an interop peer of the rig-event tests) lives in a venv of its own: it pulls in
# numba, pandas and pyarrow (~700 MB) that ocs-core itself never needs. If it cannot be installed,
# its tests are skipped with the reason.
IBL_VENV := .venv-iblutil
IBL_STAMP := $(IBL_VENV)/.installed-stamp

$(IBL_STAMP):
	-$(PYTHON) -m venv $(IBL_VENV) && $(IBL_VENV)/bin/python -m pip install --quiet \
		--disable-pip-version-check iblutil && touch $(IBL_STAMP)

install: $(STAMP)

test: $(STAMP) $(IBL_STAMP)
	OCS_CORE_IBLUTIL_PYTHON=$$( [ -f $(IBL_STAMP) ] && echo $(CURDIR)/$(IBL_VENV)/bin/python ) \
		$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) clients/examples/demo.py

bench: $(STAMP)
	$(PY) bench/rpc.py
	$(PY) bench/obe.py

# hostile input on every surface, router kills and NAT-style cuts (a few minutes; not in `make test`)
chaos: $(STAMP)
	$(PY) bench/chaos.py

clean:
	rm -rf $(VENV) $(IBL_VENV) *.egg-info .pytest_cache
