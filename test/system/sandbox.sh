#!/usr/bin/env bash
# A real systemd as PID 1, for the system tests, on a machine whose PID 1 is not systemd:
# systemd-nspawn boots a small Debian root (built once with debootstrap, then cached) on a
# throw-away overlay. Needs root and Debian's mirror.
#
#   sandbox.sh prepare                   host tools (apt-get) and the cached root, idempotent
#   sandbox.sh up NAME [BIND...]         boot; BIND is SRC:DST (read-write) or ro:SRC:DST
#   sandbox.sh exec NAME CMD...          run CMD inside (all namespaces), status passed through
#   sandbox.sh down NAME [--power-cut]   clean power-off, or kill the whole container at once
#
# Traps this avoids (see the project's notes in test/system/README.md): nspawn must not ask a
# host systemd over D-Bus (--register=no --keep-unit); host /run is not a tmpfs (private mount
# namespace with a tmpfs on /run/systemd); nspawn's seccomp blocks bpf() unless
# --system-call-filter=bpf (else IPAddressDeny= is not enforced); a hybrid cgroup host needs
# SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1; the container gets its own cgroup directory.
set -euo pipefail
SELF=$(readlink -f "$0")
CACHE=${TOPE_SANDBOX_CACHE:-/var/cache/tope-updater-sandbox}
STATE=${TOPE_SANDBOX_STATE:-/run/tope-updater-sandbox}
SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,libpam-systemd,iproute2,procps,curl,ca-certificates
ROOT=$CACHE/root-$SUITE
# the Node the services run on inside: the one the project's make targets use (scripts/node.sh)
NODE_BIN=${TOPE_NODE_BIN:-$(bash "$(dirname "$SELF")/../../scripts/node.sh")/node}
die() { echo "sandbox: $*" >&2; exit 1; }

mirror() {
  local u
  u=$(grep -rhoE '^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -oE 'https?://[^[:space:]]+' | grep -i debian | grep -v security | head -n1 || true)
  echo "${u:-http://deb.debian.org/debian}"
}

prepare() {
  local need=()
  command -v systemd-nspawn >/dev/null || need+=("systemd-container=$(dpkg-query -W -f='${Version}' systemd)")
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    }
  fi
  [ -e "$ROOT/.ready" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"; flock 9
  [ -e "$ROOT/.ready" ] && return 0
  rm -rf --one-file-system "$ROOT.tmp"
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT.tmp" "$(mirror)" > "$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  echo sandbox > "$ROOT.tmp/etc/hostname"
  tr -d '-' < /proc/sys/kernel/random/uuid > "$ROOT.tmp/etc/machine-id"   # no first boot
  for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
           fstrim.timer getty@tty1.service console-getty.service systemd-firstboot.service; do
    ln -sfn /dev/null "$ROOT.tmp/etc/systemd/system/$u"
  done
  rm -rf "$ROOT.tmp"/var/cache/apt/archives/*.deb "$ROOT.tmp"/var/lib/apt/lists/*
  mv "$ROOT.tmp" "$ROOT"
  touch "$ROOT/.ready"
}

leader() { cat "$STATE/$1/leader" 2>/dev/null; }
inside() { local l; l=$(leader "$1") || die "sandbox $1 is not up"; shift
  nsenter -t "$l" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"; }

# Runs detached: own cgroup, private mount namespace with a tmpfs on /run/systemd, then nspawn.
launch() {
  local name=$1; shift
  local cg=/sys/fs/cgroup/unified
  [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && cg=/sys/fs/cgroup
  for d in "$cg/tope-sandbox.$name" /sys/fs/cgroup/systemd/tope-sandbox."$name"; do
    [ -d "$(dirname "$d")" ] || continue
    mkdir -p "$d" && echo $$ > "$d/cgroup.procs" && echo "$d" >> "$STATE/$name/cgroups"
  done
  exec unshare --mount --propagation private -- sh -c 'mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && exec "$@"' sh "$@"
}

up() {
  local name=$1; shift
  [ -e "$ROOT/.ready" ] || prepare
  down "$name" >/dev/null 2>&1 || true
  mkdir -p "$STATE/$name"
  local args=(systemd-nspawn --quiet -D "$ROOT" --volatile=overlay --boot --machine="tope-$name" --register=no --keep-unit
    --console=pipe --link-journal=no --system-call-filter=bpf --private-network
    --bind-ro="$(readlink -f "$NODE_BIN")":/usr/bin/node)
  for b in "$@"; do
    case $b in ro:*) args+=(--bind-ro="${b#ro:}") ;; *) args+=(--bind="$b") ;; esac
  done
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 setsid "$SELF" __launch "$name" "${args[@]}" > "$STATE/$name/console.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name/launcher"
  local deadline=$((SECONDS + 60)) l st
  while :; do
    for c in $(pgrep -P "$(cat "$STATE/$name/launcher")" 2>/dev/null) $(pgrep -f "machine=tope-$name" 2>/dev/null); do
      for l in $(pgrep -P "$c" 2>/dev/null); do
        [ "$(cat /proc/"$l"/comm 2>/dev/null)" = systemd ] && echo "$l" > "$STATE/$name/leader"
      done
    done
    if [ -s "$STATE/$name/leader" ]; then
      st=$(inside "$name" systemctl is-system-running 2>/dev/null || true)
      case $st in running|degraded) break ;; esac
    fi
    kill -0 "$(cat "$STATE/$name/launcher")" 2>/dev/null || { tail -n 30 "$STATE/$name/console.log" >&2; die "the container exited while booting"; }
    [ $SECONDS -lt $deadline ] || { tail -n 30 "$STATE/$name/console.log" >&2; die "boot timed out"; }
    sleep 0.05
  done
}

down() {
  local name=$1 how=${2:-}
  [ -d "$STATE/$name" ] || return 0
  local lp; lp=$(cat "$STATE/$name/launcher" 2>/dev/null || true)
  if [ "$how" = --power-cut ]; then
    # everything in the container dies at once, as in a power cut (without losing the page cache)
    [ -n "$(leader "$name")" ] && kill -KILL "$(leader "$name")" 2>/dev/null || true
  elif [ -n "$(leader "$name")" ]; then
    timeout 10 nsenter -t "$(leader "$name")" -a -- systemctl poweroff --no-block >/dev/null 2>&1 || true
  fi
  for _ in $(seq 150); do [ -n "$lp" ] && kill -0 "$lp" 2>/dev/null || break; sleep 0.1; done
  [ -n "$lp" ] && kill -KILL "$lp" 2>/dev/null || true
  while read -r d; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done < "$STATE/$name/cgroups" 2>/dev/null || true
  rm -rf "${STATE:?}/$name"
}

cmd=${1:-}; shift || true
case $cmd in
  prepare) prepare ;;
  up) up "$@" ;;
  exec) name=$1; shift; inside "$name" "$@" ;;
  down) down "$@" ;;
  __launch) launch "$@" ;;
  *) sed -n '2,12p' "$SELF" >&2; exit 2 ;;
esac
