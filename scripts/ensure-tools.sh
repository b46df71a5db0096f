#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real, when they are missing and we are root.
set -euo pipefail
need=()
command -v systemd-socket-activate >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
# Real origins the download tests run against (test/real-origins.test.ts); those tests skip,
# saying why, when it is missing and cannot be installed.
optional=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || optional+=(nginx)
# A real forward proxy for the fetcher's downloads behind one (test/proxy.test.ts, which skips,
# saying why, without it): the binary alone, without the service the tinyproxy package starts.
command -v tinyproxy >/dev/null || optional+=(tinyproxy-bin)
# The services on arm64 code (test/arm64.test.ts): QEMU's user-mode emulator, which
# scripts/arm64-runtime.sh runs explicitly with the arm64 Node and libraries it fetches itself.
command -v qemu-aarch64-static >/dev/null || optional+=(qemu-user-static)
# The order of the services' removals and fsyncs (test/durable-removals.test.ts watches them
# with strace; setpriv, from util-linux, ends the traced process with its tracer).
command -v strace >/dev/null || optional+=(strace)
# Debian's own checks of the .deb that make deb builds (test/deb-package.test.ts runs lintian over it).
command -v lintian >/dev/null || optional+=(lintian)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "missing test tools (${need[*]}); install them: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
if [ ${#optional[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "not root: the tests against ${optional[*]} will be skipped (sudo apt-get install ${optional[*]})" >&2
  optional=()
fi
if [ $((${#need[@]} + ${#optional[@]})) -gt 0 ]; then
  apt-get update -qq
  # Debian's nginx package starts the distribution's server on port 80 as it installs: the
  # tests start their own on free ports, so nothing may be started here (policy-rc.d 101).
  noStart=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && noStart=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" "${optional[@]}" || { [ -z "$noStart" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$noStart" ] || rm -f /usr/sbin/policy-rc.d
fi
# A real browser for the API's cross-origin tests: optional (those tests skip and say why without
# it), installed from Debian when root.
if ! command -v chromium >/dev/null && [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ||
    echo "chromium could not be installed; the browser tests will be skipped" >&2
fi
# As root, the system tests boot a real systemd: systemd-nspawn over a cached Debian root
# (about a minute the first time on a machine, then nothing).
# The cgroup limits need a VM with its own kernel: qemu-system-x86 (installed when missing) and
# a disk image made from that root plus Debian's kernel (under a minute and a half, then nothing).
if [ "$(id -u)" -eq 0 ]; then
  bash "$(dirname "$0")/../test/system/sandbox.sh" prepare
  bash "$(dirname "$0")/../test/system/vm.sh" prepare
fi
# The arm64 Node and its libraries for test/arm64.test.ts, fetched once into a cache (the test
# skips, saying why, without them).
bash "$(dirname "$0")/arm64-runtime.sh" >/dev/null || echo "the arm64 runtime is not available; test/arm64.test.ts will be skipped" >&2
