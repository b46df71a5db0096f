#!/usr/bin/env bash
# `make run`: the three services on this machine without root or systemd. Every path is under
# ./var (TOPE_RUN_VAR moves it); the gateway listens on 127.0.0.1:12315, the workers on Unix
# sockets in ./var/run. Ctrl-C stops all three.
#
# What systemd does on a device, done here by hand:
# - order: the socket units exist before any service, so the gateway never finds a worker
#   missing. Here the workers start first and the gateway only once both sockets are there (a
#   worker binds its socket after its recovery, when it can take a command).
# - Restart=on-failure: a service that crashes is logged and started again; a second crash of
#   the same service within TOPE_RUN_RESTART_WINDOW_S seconds (10, as a start limit would) ends
#   everything, with the reason. A clean exit, or status 78 (bad configuration,
#   RestartPreventExitStatus=), ends everything too: nothing would start that service again.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(bash scripts/node.sh):$PATH" # the Node every make target uses, also when run by hand
var="${TOPE_RUN_VAR:-$PWD/var}"
mkdir -p "$var/run" "$var/lib/fetcher" "$var/lib/installer" "$var/root"
# the simulated device's / is held as a printer's is (0755, whatever the umask): the trusted keys'
# checks read every directory above the keys up to it (README, "Keys on the device")
[ -n "${TOPE_ROOT_PREFIX:-}" ] || chmod 0755 "$var/root"
export TOPE_FETCHER_STATE_DIR="${TOPE_FETCHER_STATE_DIR:-$var/lib/fetcher}"
export TOPE_INSTALLER_STATE_DIR="${TOPE_INSTALLER_STATE_DIR:-$var/lib/installer}"
export TOPE_FETCHER_SOCKET="${TOPE_FETCHER_SOCKET:-$var/run/fetcher.sock}"
export TOPE_INSTALLER_SOCKET="${TOPE_INSTALLER_SOCKET:-$var/run/installer.sock}"
export TOPE_ROOT_PREFIX="${TOPE_ROOT_PREFIX:-$var/root}"
export TOPE_ALLOW_HTTP="${TOPE_ALLOW_HTTP:-1}"
# no systemd to sandbox post_cmds in: they run as the installer's children, said explicitly
export TOPE_POST_CMD_SANDBOX="${TOPE_POST_CMD_SANDBOX:-none}"
# the README's walk-through serves its sample package from 127.0.0.1:8000
export TOPE_ALLOWED_URL_NETS="${TOPE_ALLOWED_URL_NETS:-127.0.0.0/8,::1/128}"
window=${TOPE_RUN_RESTART_WINDOW_S:-10}
CONFIG_ERROR=78
# a development signing key (var/dev-signing-key.pem) the simulated device trusts, and its product id
node dist/scripts/dev-trust.js "$var/dev-signing-key.pem"

declare -A socket_of=([fetcher]=$TOPE_FETCHER_SOCKET [installer]=$TOPE_INSTALLER_SOCKET)
declare -A service_of=() # pid -> service
declare -A crashed_at=() # service -> SECONDS of its last crash
say() { echo "make run: $*" >&2; }

stop_all() {
  trap - INT TERM EXIT
  local p
  for p in "${!service_of[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT # whatever ends this script ends the services too
end() {
  say "$*; stopping everything"
  stop_all
  exit 1
}

# Starts a service; a worker counts as started once its socket is there.
start() {
  local svc=$1 sock=${socket_of[$1]-}
  [ -z "$sock" ] || rm -f "$sock" # a stale one would look like the new process's
  # with its unit's Environment= lines (V8's heap flags, malloc's arenas), as systemd starts it
  (
    while IFS= read -r assignment; do eval "export $assignment"; done < <(sed -n 's/^Environment=//p' "units/tope-$svc.service")
    exec node "dist/bundle/$svc.js"
  ) &
  local pid=$!
  service_of[$pid]=$svc
  say "$svc started (pid $pid)"
  [ -n "$sock" ] || return 0
  local deadline=$((SECONDS + 60))
  until [ -S "$sock" ]; do
    kill -0 "$pid" 2>/dev/null || return 0 # it died first: the loop below sees its exit
    [ $SECONDS -lt $deadline ] || end "$svc did not create $sock within 60 s"
    sleep 0.05
  done
  say "$svc takes commands on $sock"
}

describe() { # an exit status as wait reports it
  if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128)) ($(kill -l $(($1 - 128))))"; else echo "exited with status $1"; fi
}

for svc in fetcher installer api-gateway; do
  [ -f "dist/bundle/$svc.js" ] || end "dist/bundle/$svc.js is missing: make build"
  start "$svc"
done

while :; do
  done_pid=
  status=0
  wait -n -p done_pid || status=$?
  [ -n "$done_pid" ] || continue
  svc=${service_of[$done_pid]}
  unset "service_of[$done_pid]"
  how=$(describe "$status")
  [ "$status" -ne 0 ] || end "$svc (pid $done_pid) $how: nothing would start it again"
  [ "$status" -ne $CONFIG_ERROR ] || end "$svc (pid $done_pid) $how: a configuration error, which a restart does not cure"
  last=${crashed_at[$svc]-}
  if [ -n "$last" ] && [ $((SECONDS - last)) -lt "$window" ]; then
    end "$svc (pid $done_pid) $how, its second crash within ${window} s"
  fi
  crashed_at[$svc]=$SECONDS
  say "$svc (pid $done_pid) $how; starting it again (Restart=on-failure)"
  start "$svc"
done
