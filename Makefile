# tope-updater: `make run` runs the three services locally, `make test` installs what it needs
# and passes every test. `make install` puts the code and units on a device (DESTDIR aware);
# `make deb` builds the Debian package of the same tree.
SHELL := /bin/bash
# Every node, npx and npm below runs on the Node scripts/node.sh picks: this machine's own when it
# meets package.json's engines.node, else the pinned release it installs into ~/.cache once.
NODE_BIN := $(shell bash scripts/node.sh --check)
ifeq ($(NODE_BIN),)
$(error no usable Node (scripts/node.sh said why above))
endif
export PATH := $(NODE_BIN):$(PATH)
NODE ?= node
PREFIX ?= /usr/lib/tope-updater
# /usr/lib, not /lib: on a merged-/usr root /lib is a symlink, which a tree unpacked from
# DESTDIR must not replace with a real directory
UNITDIR ?= /usr/lib/systemd/system
DEB_DIR ?= var/deb
BINDIR ?= /usr/bin
COVERAGE_LINES ?= 85
# a selection: make test TESTS=dist/test/transfer.test.js COVERAGE_LINES=0
TESTS ?= dist/test/*.test.js

.PHONY: all deps build run test lint format bench bench-peers campaign powercut reliability clean install install-files tools sample deb deb-package

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json

# tsc, then each service built into one file, dist/bundle/<service>.js (scripts/bundle.ts): what
# the units, `make run` and the tests start
build: deps
	rm -rf dist
	npx tsc -p .
	$(NODE) dist/scripts/bundle.js

# Test tools from Debian's packages (systemd-socket-activate, openssl, curl), when missing.
tools:
	@bash scripts/ensure-tools.sh

run: build
	@bash scripts/run-local.sh

# The formatter's and the linter's verdict (.prettierrc.json: 120 columns; eslint.config.js: correctness
# checks and the naming rule). `make format` rewrites the files the formatter would change.
LINTED := services shared test bench scripts
lint: deps
	npx prettier --check --log-level warn $(LINTED)
	npx eslint $(LINTED)

format: deps
	npx prettier --write --log-level warn $(LINTED)

test: build tools lint
	@echo "make test: Node $$($(NODE) --version) ($$(command -v $(NODE)))"
	@# c8's report maps every process's coverage through the bundles' source maps: ~2.6 GB of
	@# V8 coverage JSON in a full run, over Node's default 4 GB heap once (an OOM at the report).
	@# scripts/fresh-tmpdir.sh: the run's TMPDIR, which the tests must leave empty
	bash scripts/fresh-tmpdir.sh $(NODE) --max-old-space-size=12288 node_modules/c8/bin/c8.js --reporter=text-summary --reporter=text --all --src . \
	  --include 'dist/shared/**/*.js' --include 'dist/services/**/*.js' --include 'dist/bundle/*.js' \
	  --exclude 'dist/test/**' --exclude 'dist/**/main.js' \
	  --check-coverage --lines $(COVERAGE_LINES) \
	  $(NODE) --test --test-concurrency=2 --test-timeout=2700000 $(TESTS)

# Benchmarks, not tests (make test never runs them): real service processes, one table on stdout
# and in BENCHMARKS.md, in about an hour (three 1 GiB updates at 10 Mbit/s are ~45 min of it).
# BENCH_QUICK=1: small sizes and few runs; BENCH_ONLY=capped,download: a selection; both write to
# var/bench/ instead.
bench: build
	$(NODE) dist/bench/main.js

# Only the rows against the peers (SWUpdate and Mender from Debian, which it installs when missing;
# root): a selection, written to var/bench/BENCHMARKS.partial.md. BENCH_QUICK=1 works here too.
bench-peers: build
	BENCH_ONLY=peers $(NODE) dist/bench/main.js

# The random SIGKILL campaign alone, longer than CI's (make campaign N=1000).
N ?= 1000
campaign: build
	$(NODE) dist/test/reliability/main.js campaign $(N)

# Real power cuts: N whole updates in the QEMU VM, each cut by a SIGKILL of the emulator, then
# booted again and checked (make powercut N=40; root, the VM prepared by make tools). The table
# goes into RELIABILITY.md. POWERCUT_MINUTES=50: begin no new cut after that long. It holds the
# system tests' lock: never two VMs or sandboxes at once.
powercut: build
	flock /tmp/tope-system-tests.lock env RELIABILITY_FILE=RELIABILITY.md $(NODE) dist/test/reliability/main.js powercut $(if $(filter command line,$(origin N)),$(N),40)

# Every campaign (failpoints, random SIGKILL, network faults, property tests) and one table of
# their figures, also written into RELIABILITY.md.
reliability: build
	RELIABILITY_FILE=RELIABILITY.md $(NODE) dist/test/reliability/main.js reliability $(N)

clean:
	rm -rf dist coverage var

# The code, the units, sysusers.d and tmpfiles.d. On a running system (no DESTDIR) it also creates
# the users and directories and reloads systemd, so that `systemctl enable --now
# tope-updater.target` is all that is left. The services and tope-pack run from their bundles
# (dist/bundle, each with its dependencies inside): install-files needs no npm and no network, only
# a built dist/. package.json stays beside them: its "type": "module" makes Node load them as ES
# modules.
install: build install-files

install-files:
	rm -rf $(DESTDIR)$(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/dist $(DESTDIR)$(BINDIR)
	cp -r dist/bundle $(DESTDIR)$(PREFIX)/dist/
	chmod 755 $(DESTDIR)$(PREFIX)/dist/bundle/tools/tope-pack.js
	printf '#!/bin/sh\nexec /usr/bin/node $(PREFIX)/dist/bundle/tools/tope-pack.js "$$@"\n' > $(DESTDIR)$(BINDIR)/tope-pack
	chmod 755 $(DESTDIR)$(BINDIR)/tope-pack
	install -m644 package.json README.md $(DESTDIR)$(PREFIX)/
	install -d $(DESTDIR)$(UNITDIR)
	install -m644 units/*.service units/*.socket units/*.path units/*.target $(DESTDIR)$(UNITDIR)/
	install -Dm644 units/tope-updater.sysusers $(DESTDIR)/usr/lib/sysusers.d/tope-updater.conf
	install -Dm644 units/tope-updater.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/tope-updater.conf
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  systemd-sysusers tope-updater.conf && systemd-tmpfiles --create tope-updater.conf && systemctl daemon-reload; fi

# The Debian package (var/deb/tope-updater_<version>_all.deb): the tree of install-files, the
# units in /usr/lib/systemd/system, the conffile /etc/default/tope-updater and maintainer scripts
# that create the users and directories and enable the target. DEB_VERSION overrides the version.
deb: build deb-package

deb-package:
	@bash packaging/deb/build.sh $(DEB_DIR) $(DEB_VERSION)

# A small package to install under `make run` (see README), built and signed by tope-pack with the
# development key `make run` trusts.
sample: build
	@$(NODE) dist/scripts/sample-package.js $(VERSION)
