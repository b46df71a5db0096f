#!/usr/bin/env bash
# `make run`: the three services on this machine without root or systemd. Every path is under
# ./var; the gateway listens on 127.0.0.1:12315, the workers on Unix sockets in ./var/run.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
var="$PWD/var"
mkdir -p "$var/run" "$var/lib/fetcher" "$var/lib/installer" "$var/root"
export TOPE_FETCHER_STATE_DIR="${TOPE_FETCHER_STATE_DIR:-$var/lib/fetcher}"
export TOPE_INSTALLER_STATE_DIR="${TOPE_INSTALLER_STATE_DIR:-$var/lib/installer}"
export TOPE_FETCHER_SOCKET="${TOPE_FETCHER_SOCKET:-$var/run/fetcher.sock}"
export TOPE_INSTALLER_SOCKET="${TOPE_INSTALLER_SOCKET:-$var/run/installer.sock}"
export TOPE_ROOT_PREFIX="${TOPE_ROOT_PREFIX:-$var/root}"
export TOPE_ALLOW_HTTP="${TOPE_ALLOW_HTTP:-1}"
# the README's walk-through serves its sample package from 127.0.0.1:8000
export TOPE_ALLOWED_URL_NETS="${TOPE_ALLOWED_URL_NETS:-127.0.0.0/8,::1/128}"

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait
}
trap stop INT TERM EXIT
for svc in fetcher installer api-gateway; do
  [ -f "dist/services/$svc/main.js" ] || continue
  node "dist/services/$svc/main.js" &
  pids+=($!)
done
wait -n
