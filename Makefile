# snep: the two set-up commands of the README are `make demo` and `make test`.
# Both install what they need: Debian packages (as root), a virtualenv and snep in it.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
SNEP     := $(VENV)/bin/snep
DEBS     := conntrack conntrackd nftables keepalived iproute2 graphviz man-db
STAMP    := $(VENV)/.installed
GOAL      = $(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))

.PHONY: demo test deps debs venv model-tests model-tests-deep conformance bench diagrams man spec-check clean

demo: deps
	$(SNEP) demo

test: deps
	$(PY) -m pytest -q

deps: debs $(STAMP)

# Install only the Debian packages that are missing. apt-get needs root: anyone else is
# told which packages are missing and how to install them (or how to go on without
# them: the tests that need one skip, with the reason).
debs:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); \
	missing=$${missing% }; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "make: snep needs Debian packages that are not installed: $$missing" >&2; \
		echo "make: installing them needs root; run" >&2; \
		echo "" >&2; \
		echo "    sudo apt-get install $$missing" >&2; \
		echo "" >&2; \
		echo "make: and then make $(GOAL) again (or make $(GOAL) DEBS= to go on without them)" >&2; \
		exit 1; \
	fi; \
	echo "installing Debian packages: $$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

model-tests: deps
	$(PY) -m pytest -q model_tests

model-tests-deep: deps
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q model_tests

conformance: deps
	$(SNEP) conformance --impl snep

bench: deps
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

# NAME.svg, and NAME.gv: the DOT source that tests/test_fsm_diagram.py compares with the tables
diagrams: deps
	$(SNEP) diagram --format svg --out docs/diagrams

# man/snep.8 and man/snep.toml.5, from the parsers and config.SETTINGS (tests/test_man.py
# fails when the committed pages are not what this writes)
man: deps
	$(SNEP) man --out man

spec-check: deps
	$(SNEP) spec check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
