# ocs-core: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv when missing and installs the project with what it needs (crossbar included).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install clean bench smbluesky-venv chaos

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# bjdata (crossbar -> autobahn[serialization]) ships only an sdist whose C extension is built
# against NumPy 1.x; under NumPy 2 importing it prints an "_ARRAY_API not found" traceback in every
# process that loads autobahn's serializers (crossbar, ocs's tools). Its pure-Python build has no
# such extension; it is made once, without pip's wheel cache (which may hold the extension build),
# before the project's install finds bjdata already satisfied.
BJDATA_STAMP := $(VENV)/.bjdata-stamp

$(BJDATA_STAMP): $(PY)
	PYBJDATA_NO_EXTENSION=1 $(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir \
		--force-reinstall --no-deps 'bjdata>=0.6'
	touch $(BJDATA_STAMP)

# Not --quiet: the first install takes minutes, and pip's "Collecting ..." lines show it moving.
$(STAMP): $(PY) $(BJDATA_STAMP) setup.cfg pyproject.toml
	@echo "installing ocs-core and its dependencies into $(VENV) (a few minutes the first time)"
	PYBJDATA_NO_EXTENSION=1 $(PY) -m pip install --disable-pip-version-check --progress-bar off \
		-e '.[test,router,plot,web]'
	touch $(STAMP)

# The real iblutil (an interop peer of the rig-event tests) lives in a venv of its own: it pulls in
# numba, pandas and pyarrow (~700 MB) that ocs-core itself never needs. If it cannot be installed,
# its tests are skipped with the reason.
IBL_VENV := .venv-iblutil
IBL_STAMP := $(IBL_VENV)/.installed-stamp

$(IBL_STAMP):
	-$(PYTHON) -m venv $(IBL_VENV) && $(IBL_VENV)/bin/python -m pip install --quiet \
		--disable-pip-version-check iblutil && touch $(IBL_STAMP)

# The real sm-bluesky 1.4.0 (an interop peer of the instrument tests) lives in a venv of its own
# too: its [server] extra pulls in ~190 packages (dodal, opencv, pandas, zhinst, ~1.4 GB, a minute
# or two to install). It is kept while its stamp is under a week old. If it cannot be installed,
# its tests fail in CI (CI=true) and are skipped elsewhere, with the reason.
SMB_VENV := .venv-smbluesky
SMB_STAMP := $(SMB_VENV)/.installed-stamp
SMB_SPEC := sm-bluesky[server]==1.4.0

smbluesky-venv:
	@if [ -f $(SMB_STAMP) ] && [ -z "$$(find $(SMB_STAMP) -mtime +6)" ]; then :; else \
		echo "installing $(SMB_SPEC) into $(SMB_VENV) (interop peer; a minute or two)"; \
		rm -rf $(SMB_VENV) && $(PYTHON) -m venv $(SMB_VENV) && $(SMB_VENV)/bin/python -m pip install \
			--quiet --disable-pip-version-check '$(SMB_SPEC)' && touch $(SMB_STAMP) \
		|| echo "sm-bluesky could not be installed; its interop tests will say so"; fi

install: $(STAMP)

test: $(STAMP) $(IBL_STAMP) smbluesky-venv
	OCS_CORE_IBLUTIL_PYTHON=$$( [ -f $(IBL_STAMP) ] && echo $(CURDIR)/$(IBL_VENV)/bin/python ) \
	OCS_CORE_SMBLUESKY_PYTHON=$$( [ -f $(SMB_STAMP) ] && echo $(CURDIR)/$(SMB_VENV)/bin/python ) \
		$(PY) -m pytest -q tests

# `make demo PORT=9001` (or OCS_DEMO_PORT=9001): the router on 9001, the demo's agents on 9002...
demo: $(STAMP)
	$(PY) clients/examples/demo.py --site-file site-config.yaml $(if $(PORT),--port $(PORT)) $(if $(KEEP),--keep)

bench: $(STAMP)
	$(PY) bench/rpc.py
	$(PY) bench/obe.py
	$(PY) bench/access.py
	PYTHONPATH=. $(PY) bench/archive.py

# hostile input on every surface, router kills and NAT-style cuts (a few minutes; not in `make test`)
chaos: $(STAMP)
	$(PY) bench/chaos.py

clean:
	rm -rf $(VENV) $(IBL_VENV) $(SMB_VENV) *.egg-info .pytest_cache
