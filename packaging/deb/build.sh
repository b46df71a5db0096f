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

# what Debian's tools put beside every package: the copyright (the bundled npm packages' licences,
# written by make build) and a changelog, native-package style, dated by the commit built (or
# SOURCE_DATE_EPOCH) so that two builds of one commit are the same bytes
doc="$root/usr/share/doc/tope-updater"
install -Dm644 "$repo/dist/bundle/LICENSES" "$doc/copyright"
maintainer=$(sed -n 's/^Maintainer: //p' "$repo/packaging/deb/control.in")
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'tope-updater (%s) unstable; urgency=medium\n\n  * Built by make deb from commit %s.\n\n -- %s  %s\n' \
	"$version" "$commit" "$maintainer" "$(LC_ALL=C date -u -R -d "@$epoch")" | gzip -9n > "$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"

# tope-pack's manual page, made from its own usage text (one source for both): troff needs a
# backslash escaped, and a line that starts with a dot or a quote guarded
usage=$(node "$repo/dist/bundle/tools/tope-pack.js" 2>&1 >/dev/null || true)
install -d "$root/usr/share/man/man1"
{
	printf '.TH TOPE-PACK 1 "" "tope-updater %s" "User Commands"\n' "$version"
	printf '.SH NAME\ntope-pack \\- build, sign and check tope-updater packages\n.SH SYNOPSIS\n.nf\n'
	printf '%s\n' "$usage" | sed -e '1d' -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" -e 's/-/\\-/g'
	printf '.fi\n.SH SEE ALSO\n/usr/lib/tope-updater/README.md, section "Signed packages"\n'
} | gzip -9n > "$root/usr/share/man/man1/tope-pack.1.gz"
chmod 644 "$root/usr/share/man/man1/tope-pack.1.gz"

install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@NODE_MIN@/$node_min/" \
    -e "s/@INSTALLED_SIZE@/$(du -sk "$root" | cut -f1)/" "$repo/packaging/deb/control.in" > "$root/DEBIAN/control"
install -m755 "$repo/packaging/deb/postinst" "$repo/packaging/deb/prerm" "$repo/packaging/deb/postrm" "$root/DEBIAN/"
echo /etc/default/tope-updater > "$root/DEBIAN/conffiles"
# dpkg --verify (dpkg -V) checks the installed files against these
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

deb="$out/tope-updater_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
