# cc: `make run` starts the demo topology, `make test` runs the suite (both tiers),
# `make test-unit` only the fast tier (test/unit/: in-process, seconds).
# Both create .venv and install the project into it first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all run test test-unit test-long soak bench bench-logtail clean deb test-deb

all: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/cc-demo conf/demo

test: $(STAMP)
	$(PY) -m nose2 --verbose --start-dir test

# The fast tier alone: no subprocess, no server started; `make test` runs it too.
test-unit: $(STAMP)
	$(PY) -m nose2 --verbose --start-dir test/unit --top-level-directory test

test-long: $(STAMP)
	CC_TEST_LONG=1 $(PY) -m nose2 --verbose --start-dir test

# 30 minutes of mixed traffic through three servers; SOAK_MINUTES=2 shortens it.
soak: $(STAMP)
	$(PY) test/soak.py

# Every measurement doc/performance.md quotes, each against its reference in the same run.
bench: $(STAMP)
	$(VENV)/bin/cc-bench all

# The Debian package, built in a copy of the tree so that nothing lands in the
# parent directory; the .deb ends up in dist/.  PATH is Debian's own, so that the
# build and its tests use /usr/bin/python3 and Debian's modules, not a venv or pyenv.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' cc/__init__.py)
DEBBUILD := build/deb

# As root, installs the build dependencies first (the build runs the suite on Debian's packages).
deb:
	if [ "$$(id -u)" = 0 ]; then apt-get build-dep -y -q ./; fi
	rm -rf $(DEBBUILD) && mkdir -p $(DEBBUILD)/cc-$(VERSION) dist
	tar -c --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
		--exclude=__pycache__ --exclude='*.egg-info' . | tar -x -C $(DEBBUILD)/cc-$(VERSION)
	cd $(DEBBUILD)/cc-$(VERSION) && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	cp $(DEBBUILD)/cc_$(VERSION)_all.deb dist/

# Build, install with apt, run as user cc, purge: slow, root only, changes the system.
test-deb: deb $(STAMP)
	CC_TEST_DEB=dist/cc_$(VERSION)_all.deb $(PY) -m nose2 --verbose --start-dir test test_deb

bench-logtail: $(STAMP)
	$(VENV)/bin/cc-bench logtail

clean:
	rm -rf $(VENV) build dist *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
