# cc: `make run` starts the demo topology, `make test` runs the suite.
# Both create .venv and install the project into it first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all run test test-long bench-onehop bench-logtail clean

all: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/cc-demo conf/demo

test: $(STAMP)
	$(PY) -m nose2 --verbose --start-dir test

test-long: $(STAMP)
	CC_TEST_LONG=1 $(PY) -m nose2 --verbose --start-dir test

bench-onehop: $(STAMP)
	$(PY) bench/onehop.py

bench-logtail: $(STAMP)
	$(PY) bench/logtail.py

clean:
	rm -rf $(VENV) build dist *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
