#!/usr/bin/env bash
# make deb: the Debian package of what `make install-files` lays out, built with dpkg-deb.
#   build.sh OUT_DIR [VERSION]   writes OUT_DIR/tope-updater_<VERSION>_all.deb and prints its path
# VERSION defaults to package.json's; the nodejs dependency comes from package.json's
# engines.node, the one place the required Node is written.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
version=${2:-$(node -p "require('$repo/package.json').version")}
node_min=$(node -p "require('$repo/package.json').engines.node.match(/[0-9]+(\\.[0-9]+)*/)[0]")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

make -s -C "$repo" install-files DESTDIR="$root" PREFIX=/usr/lib/tope-updater UNITDIR=/usr/lib/systemd/system >/dev/null
install -Dm644 "$repo/packaging/deb/tope-updater.default" "$root/etc/default/tope-updater"
# merged /usr: nothing may land in a real /lib, /bin or /sbin of the target
for d in lib bin sbin lib64; do [ ! -e "$root/$d" ] || { echo "build.sh: /$d in the package" >&2; exit 1; }; done

install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@NODE_MIN@/$node_min/" \
    -e "s/@INSTALLED_SIZE@/$(du -sk "$root" | cut -f1)/" "$repo/packaging/deb/control.in" > "$root/DEBIAN/control"
install -m755 "$repo/packaging/deb/postinst" "$repo/packaging/deb/prerm" "$repo/packaging/deb/postrm" "$root/DEBIAN/"
echo /etc/default/tope-updater > "$root/DEBIAN/conffiles"

deb="$out/tope-updater_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
