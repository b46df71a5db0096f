# tope-updater: `make run` runs the three services locally, `make test` installs what it needs
# and passes every test. `make install` puts the code and units on a device (DESTDIR aware).
SHELL := /bin/bash
NODE ?= node
PREFIX ?= /usr/lib/tope-updater
UNITDIR ?= /lib/systemd/system
COVERAGE_LINES ?= 85

.PHONY: all deps build run test clean install tools sample

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json

build: deps
	rm -rf dist
	npx tsc -p .

# Test tools from Debian's packages (systemd-socket-activate, openssl, curl), when missing.
tools:
	@bash scripts/ensure-tools.sh

run: build
	@bash scripts/run-local.sh

test: build tools
	npx c8 --reporter=text-summary --reporter=text --all --src . \
	  --include 'dist/shared/**/*.js' --include 'dist/services/**/*.js' \
	  --exclude 'dist/test/**' --exclude 'dist/**/main.js' \
	  --check-coverage --lines $(COVERAGE_LINES) \
	  $(NODE) --test --test-concurrency=2 'dist/test/'

clean:
	rm -rf dist coverage var

# A small package to install under `make run` (see README).
sample: build
	@$(NODE) dist/scripts/sample-package.js $(VERSION)
