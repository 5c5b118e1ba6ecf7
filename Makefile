# Everything a fresh Debian machine needs, as root. `make run` and `make test` are the only entry points.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config/gateway.toml
DEB_PACKAGES := mmdebstrap sip-tester socat espeak-ng sox sqlite3 procps chromium kamailio postgresql

.PHONY: run test deps venv asterisk console check bench clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || exit 1; \
		case " $$missing " in *" kamailio "*) [ ! -d /run/systemd/system ] || systemctl disable --now kamailio;; esac; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The console's front-end libraries, from npm with the committed lock file (never a CDN at run time).
console/node_modules/.installed: console/package-lock.json
	cd console && npm ci --no-audit --no-fund
	touch $@

console: deps console/node_modules/.installed

asterisk: deps venv
	$(VENV)/bin/gateway --config $(CONFIG) asterisk up

run: asterisk console
	@echo "Asterisk: $$($(VENV)/bin/gateway --config $(CONFIG) asterisk status)"
	@echo "Store: $$(grep -E '^path' $(CONFIG) | cut -d'"' -f2)   Console: http://127.0.0.1:8080/ (gateway users reset NAME --password-stdin)   Ctrl-C stops the gateway and the stand-ins (Asterisk keeps running: gateway asterisk down)"
	scripts/run $(CONFIG)

test: deps venv console
	$(VENV)/bin/gateway --config $(CONFIG) asterisk prepare
	$(VENV)/bin/python -m pytest

check: venv
	scripts/check

bench: deps venv console
	$(VENV)/bin/python bench/intake.py
	$(VENV)/bin/python bench/fanout.py
	$(VENV)/bin/python bench/email_apprise.py
	$(VENV)/bin/python bench/relays.py
	$(VENV)/bin/python bench/smpp.py
	$(VENV)/bin/python bench/escalation.py
	$(VENV)/bin/python bench/console.py
	$(VENV)/bin/python bench/store.py

clean:
	rm -rf $(VENV) var
