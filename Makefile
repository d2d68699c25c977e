# The two commands a newcomer runs: `make demo` and `make test`. Each sets itself up on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-check e2e clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,semantic]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m claudeforce_nb demo

# The unit tests, then every notebook re-run by nbval and compared with its saved outputs
# (notebooks/conftest.py: a fresh CLAUDEFORCE_HOME each, no key). tests/e2e is not collected (make e2e).
test: $(STAMP)
	$(PY) -m claudeforce_nb validate
	$(PY) -m pytest -q tests notebooks --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg

lint: $(STAMP)
	$(PY) -m ruff check claudeforce_nb tests benchmarks
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m benchmarks.run

bench-check: $(STAMP)
	$(PY) -m benchmarks.run --check

# The real-browser check: JupyterLab + headless Chromium (installs Debian's chromium if missing).
e2e: $(STAMP)
	PY=$(PY) bash tests/e2e/run.sh

clean:
	rm -rf $(VENV) .claudeforce demo build dist
