#!/usr/bin/env bash
# What runs the services on arm64 code on an x86 machine (test/arm64.test.ts, the bench's arm64
# row): Debian's qemu-aarch64-static (package qemu-user-static, installed by `make tools` as
# root), the pinned Node's arm64 build (scripts/node.sh --arch arm64) and a sysroot holding the
# arm64 C and C++ runtime libraries it links (libc6, libstdc++6, libgcc-s1 from Debian's arm64
# archive), given to QEMU as QEMU_LD_PREFIX.
#
# The sysroot is unpacked from the .debs (dpkg-deb -x) with a private apt state, rather than
# by `dpkg --add-architecture arm64` and multiarch packages: nothing machine-wide changes (no
# foreign architecture for every later apt-get of the machine to fetch indexes for, no arm64
# libc6 that must move in lockstep with the host's), it needs no root, and QEMU is invoked
# explicitly (no binfmt_misc registration is needed or made).
#
# Prints three lines, `qemu=<path>`, `node=<path>`, `sysroot=<path>`, after running the arm64
# Node once under QEMU; fails with the reason on stderr when any of it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

qemu=$(command -v qemu-aarch64-static || true)
[ -n "$qemu" ] || {
  echo "arm64-runtime: qemu-aarch64-static is missing (Debian's qemu-user-static: make tools installs it as root)" >&2
  exit 1
}
node_dir=$(bash scripts/node.sh --arch arm64)
CACHE=${TOPE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tope-updater/node}
sysroot=$CACHE/arm64-sysroot
LIBS=(libc6 libstdc++6 libgcc-s1)

mkdir -p "$CACHE"
exec 9>"$CACHE/.arm64-sysroot.lock"
flock 9 # two test runs at once: one unpacks, the other waits and finds it there
if [ ! -e "$sysroot/.complete" ]; then
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
    echo "arm64-runtime: apt-get and dpkg-deb are needed to fetch the arm64 libraries (${LIBS[*]})" >&2
    exit 1
  }
  echo "arm64-runtime: fetching the arm64 ${LIBS[*]} from the machine's Debian sources into $sysroot" >&2
  work=$(mktemp -d "$CACHE/.arm64-sysroot.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
  touch "$work/status"
  # apt's own state (package lists, cache, dpkg status) stays in $work: the machine's is not read nor written
  apt=(-q -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "Dir::State::status=$work/status"
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update >"$work/apt.log" 2>&1 || {
    cat "$work/apt.log" >&2
    exit 1
  }
  (cd "$work/debs" && apt-get "${apt[@]}" download "${LIBS[@]/%/:arm64}") >>"$work/apt.log" 2>&1 || {
    cat "$work/apt.log" >&2
    exit 1
  }
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  touch "$work/root/.complete"
  rm -rf "$sysroot" && mv -T "$work/root" "$sysroot" # a half-unpacked sysroot never sits under the final name
fi
arch=$(QEMU_LD_PREFIX=$sysroot "$qemu" "$node_dir/node" -p process.arch) || {
  echo "arm64-runtime: the arm64 Node did not run under $qemu with $sysroot" >&2
  exit 1
}
[ "$arch" = arm64 ] || {
  echo "arm64-runtime: the emulated Node says process.arch=$arch" >&2
  exit 1
}
echo "qemu=$qemu"
echo "node=$node_dir/node"
echo "sysroot=$sysroot"
