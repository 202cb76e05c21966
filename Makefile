# snep: the two set-up commands of the README are `make demo` and `make test`.
# Both install what they need: Debian packages (as root), a virtualenv and snep in it.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
SNEP     := $(VENV)/bin/snep
DEBS     := conntrack conntrackd nftables iptables keepalived iproute2 graphviz man-db pipx
STAMP    := $(VENV)/.installed
GOAL      = $(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))

# make install: where the system files go (the program itself: pipx, see README's Install)
PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/snep
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DESTDIR  ?=

.PHONY: demo test deps debs venv model-tests model-tests-deep conformance bench diagrams man install uninstall spec-check clean

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

# The system files, in their usual places: the manual pages, the systemd unit (starting
# $(BINDIR)/snep), the examples, and /etc/snep/snep.toml unless there is one already.
# Needs no virtualenv: the pages are committed (make man). DESTDIR for packaging.
install:
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(UNITDIR)
	install -m 0644 man/snep.8 $(DESTDIR)$(MANDIR)/man8/snep.8
	install -m 0644 man/snep.toml.5 $(DESTDIR)$(MANDIR)/man5/snep.toml.5
	sed 's|/usr/local/bin/snep|$(BINDIR)/snep|g' contrib/snep.service > $(DESTDIR)$(UNITDIR)/snep.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/snep.service
	install -m 0644 contrib/snep.toml $(DESTDIR)$(DOCDIR)/examples/snep.toml
	sed 's|/usr/local/bin/snep|$(BINDIR)/snep|g' contrib/keepalived.conf > $(DESTDIR)$(DOCDIR)/examples/keepalived.conf
	chmod 0644 $(DESTDIR)$(DOCDIR)/examples/keepalived.conf
	install -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/snep
	test -e $(DESTDIR)$(SYSCONFDIR)/snep/snep.toml || install -m 0644 contrib/snep.toml $(DESTDIR)$(SYSCONFDIR)/snep/snep.toml
	@echo "installed. Next: a key file $(SYSCONFDIR)/snep/key (mode 0600; snep.toml(5), KEY FILE), $(SYSCONFDIR)/snep/snep.toml"
	@echo "edited, snep run --check --config $(SYSCONFDIR)/snep/snep.toml, systemctl daemon-reload, systemctl enable --now snep"

# What install put in place, but the config and the key in $(SYSCONFDIR)/snep.
uninstall:
	rm -f $(DESTDIR)$(MANDIR)/man8/snep.8 $(DESTDIR)$(MANDIR)/man5/snep.toml.5 $(DESTDIR)$(UNITDIR)/snep.service
	rm -rf $(DESTDIR)$(DOCDIR)

spec-check: deps
	$(SNEP) spec check

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
