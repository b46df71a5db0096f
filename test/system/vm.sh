#!/usr/bin/env bash
# A real systemd on its own kernel, for what a container on this kind of host cannot show: the
# cgroup limits (MemoryMax=, TasksMax=) that the host's cgroup v1 controllers leave unenforced
# inside systemd-nspawn. QEMU with TCG (software emulation; /dev/kvm may be a PVM that hangs a
# stock kernel, so never KVM) boots a disk image made once from the sandbox's debootstrap root
# plus Debian's kernel, then cached. Needs root and Debian's mirror.
#
#   vm.sh prepare                        qemu (apt-get) and the cached base image, idempotent
#   vm.sh run OUT ENTRY [SRC:DST...]     one boot: the base image (read-only, a throw-away
#                                        overlay) and a payload disk; prints the results
#   vm.sh payload IMG ENTRY [SRC:DST...] the payload disk alone (PERSISTENT=1: see make_payload)
#   vm.sh disk IMG                       a writable copy of the base image
#   vm.sh boot DISK PAYLOAD CONSOLE      becomes qemu on that disk, results on stdout (the
#                                        power-cut campaign SIGKILLs it: see boot below)
#
# The payload disk, made per run, holds `make install-files` (dist/ must be built), the node
# binary scripts/node.sh picks for the make targets (TOPE_NODE_BIN overrides), ENTRY and each
# SRC copied to DST (relative to the payload). At boot the base image's tope-vm-payload.service
# mounts it on /mnt/payload, binds node on /usr/bin/node and the install tree on
# /usr/lib/tope-updater (units under /mnt/payload/dest), runs ENTRY with sh, its stdout on the
# second serial port, then powers off. `run` prints the lines of that
# port that start with TOPE-RESULT and exits 0 when ENTRY exited 0 (`TOPE-EXIT 0`). OUT gets
# console.log (the first serial port: kernel and systemd) and results.log. qemu is killed
# after TOPE_VM_TIMEOUT seconds (default 300), so a run can never hang.
set -euo pipefail
SELF=$(readlink -f "$0")
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${TOPE_VM_CACHE:-/var/cache/tope-updater-vm}
SANDBOX_ROOT=${TOPE_SANDBOX_CACHE:-/var/cache/tope-updater-sandbox}/root-bookworm
# bump when the recipe below changes: a new directory is built, the old one can be deleted
BASE=$CACHE/base-v1
NODE_BIN=${TOPE_NODE_BIN:-$(bash "$REPO/scripts/node.sh")/node}
die() { echo "vm: $*" >&2; exit 1; }

# The unit the base image runs at boot (the payload decides everything else).
payload_unit() {
  cat <<'UNIT'
[Unit]
Description=tope-updater VM test payload (/dev/vdb)
Requires=dev-vdb.device
After=dev-vdb.device
# whatever happens, the VM ends
OnFailure=poweroff.target
OnFailureJobMode=replace-irreversibly

[Service]
Type=oneshot
ExecStartPre=/bin/mkdir -p /mnt/payload
ExecStartPre=/bin/mount -o ro /dev/vdb /mnt/payload
ExecStart=/bin/sh /mnt/payload/boot
StandardOutput=file:/dev/ttyS1
StandardError=journal+console
ExecStopPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
UNIT
}

prepare() {
  if ! command -v qemu-system-x86_64 >/dev/null; then
    # --no-install-recommends: no GUI, no UEFI firmware; seabios and the emulator are enough
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null 2>&1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
    }
  fi
  command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (e2fsprogs)"
  [ -e "$BASE/.ready" ] && return 0
  bash "$HERE/sandbox.sh" prepare
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.lock"; flock 8
  [ -e "$BASE/.ready" ] && return 0
  local tmp=$BASE.tmp root
  rm -rf --one-file-system "$tmp"
  mkdir -p "$tmp"
  root=$tmp/root
  cp -a "$SANDBOX_ROOT" "$root"
  rm -f "$root/.ready"
  # a small initrd (unpacking and probing a generic one costs ~10 s of emulated boot): only what
  # mounts the root from a virtio disk
  mkdir -p "$root/etc/initramfs-tools/conf.d"
  echo MODULES=list > "$root/etc/initramfs-tools/conf.d/tope-vm.conf"
  printf '%s\n' virtio_pci virtio_blk ext4 > "$root/etc/initramfs-tools/modules"
  # Debian's kernel, installed in the copy (its postinst builds the initrd, with virtio_blk),
  # in a private mount namespace so that nothing stays mounted on the host.
  unshare --mount --propagation private -- sh -ec '
    root=$1
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t sysfs sysfs "$root/sys"
    [ -e /etc/resolv.conf ] && touch "$root/etc/resolv.conf" && mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends linux-image-amd64
  ' sh "$root" > "$tmp/kernel.log" 2>&1 || { tail -n 20 "$tmp/kernel.log" >&2; die "installing the kernel in the VM root failed"; }
  cp -L "$root/vmlinuz" "$tmp/vmlinuz"
  cp -L "$root/initrd.img" "$tmp/initrd.img"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/boot/*
  echo tope-vm > "$root/etc/hostname"
  # the console is for the kernel and systemd: no login prompt on it
  ln -sfn /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
  payload_unit > "$root/etc/systemd/system/tope-vm-payload.service"
  ln -sfn /etc/systemd/system/tope-vm-payload.service "$root/etc/systemd/system/multi-user.target.wants/tope-vm-payload.service"
  mkdir -p "$root/mnt/payload"
  mkfs.ext4 -q -L tope-vm -d "$root" "$tmp/disk.img" 2G >/dev/null
  rm -rf --one-file-system "$root"
  rm -rf --one-file-system "$BASE"
  mv "$tmp" "$BASE"
  touch "$BASE/.ready"
}

# The payload disk IMG: `make install-files` (dist/ must be built), the host's node binary,
# ENTRY and each SRC copied to DST. PERSISTENT=1: the entry installs what it needs onto the
# root disk itself (the power-cut campaign, whose root persists and whose units start at boot
# before the payload is mounted), so the boot script binds nothing over the root's files.
make_payload() {
  local img=$1 entry=$2; shift 2
  [ -d "$REPO/dist/services" ] || die "dist/ is not built: make build"
  # beside IMG, in the caller's directory: should a step fail (set -e), what is left goes with it
  local stage; stage=$(mktemp -d "$(dirname "$img")/tope-vm-payload.XXXXXX")
  make -s -C "$REPO" install-files DESTDIR="$stage/dest" MAKEFLAGS= > "$stage.install.log" 2>&1 \
    || { cat "$stage.install.log" >&2; rm -rf --one-file-system "$stage" "$stage.install.log"; die "make install-files failed"; }
  rm -f "$stage.install.log"
  cp "$(readlink -f "$NODE_BIN")" "$stage/node"
  cp "$entry" "$stage/entry"
  local f
  for f in "$@"; do
    mkdir -p "$(dirname "$stage/${f#*:}")"
    cp -r "${f%%:*}" "$stage/${f#*:}"
  done
  if [ "${PERSISTENT:-0}" = 1 ]; then touch "$stage/persistent"; fi
  cat > "$stage/boot" <<'BOOT'
# Runs at the VM's boot as tope-vm-payload.service (stdout: the results port).
set -u
if [ ! -e /mnt/payload/persistent ]; then
  install -m755 /dev/null /usr/bin/node
  mount --bind /mnt/payload/node /usr/bin/node
  mkdir -p /usr/lib/tope-updater
  mount --bind /mnt/payload/dest/usr/lib/tope-updater /usr/lib/tope-updater
fi
cd /mnt/payload
sh /mnt/payload/entry
echo "TOPE-EXIT $?"
BOOT
  local kb
  kb=$(du -sk "$stage" | cut -f1)
  mkfs.ext4 -q -L tope-payload -d "$stage" "$img" "$(( kb * 12 / 10 + 16384 ))k" >/dev/null
  rm -rf --one-file-system "$stage"
}

run() {
  [ $# -ge 2 ] || die "usage: vm.sh run OUT ENTRY [SRC:DST...]"
  local out=$1 entry=$2; shift 2
  [ -e "$BASE/.ready" ] || die "no base image: run \`vm.sh prepare\` first"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  local work; work=$(mktemp -d -t tope-vm-run.XXXXXX)
  # shellcheck disable=SC2064
  trap "rm -rf --one-file-system '$work'" EXIT
  make_payload "$work/payload.img" "$entry" "$@"
  : > "$out/results.log"
  local rc=0
  timeout -s KILL "${TOPE_VM_TIMEOUT:-300}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=error" \
    -drive file="$BASE/disk.img",if=virtio,format=raw,snapshot=on \
    -drive file="$work/payload.img",if=virtio,format=raw,readonly=on \
    -nodefaults -display none -no-reboot \
    -serial file:"$out/console.log" -serial file:"$out/results.log" \
    > "$out/qemu.log" 2>&1 < /dev/null || rc=$?
  tr -d '\r' < "$out/results.log" | grep '^TOPE-RESULT ' || true
  if [ $rc -eq 137 ]; then
    tail -n 30 "$out/console.log" >&2
    die "the VM did not power off within ${TOPE_VM_TIMEOUT:-300} s: killed"
  fi
  [ $rc -eq 0 ] || { cat "$out/qemu.log" >&2; die "qemu exited $rc"; }
  if ! tr -d '\r' < "$out/results.log" | grep -qx 'TOPE-EXIT 0'; then
    tail -n 30 "$out/console.log" >&2
    tr -d '\r' < "$out/results.log" | tail -n 20 >&2
    die "the payload did not end with status 0"
  fi
}

# A writable root disk of its own (the power-cut campaign): a sparse copy of the base image.
disk() {
  [ $# -eq 1 ] || die "usage: vm.sh disk IMG"
  [ -e "$BASE/.ready" ] || die "no base image: run \`vm.sh prepare\` first"
  cp --sparse=always "$BASE/disk.img" "$1"
}

# One boot of a writable root DISK (from `disk`) with a PAYLOAD image (from `payload`), for the
# power-cut campaign: this shell becomes qemu (exec), so whoever started it cuts the power with
# SIGKILL of this very process. The results port is stdout; the console goes to CONSOLE.
#
# A SIGKILL of qemu loses what lived only in the emulator: the guest's RAM (page cache, writes
# not yet handed to the disk) and any cache of QEMU's own; the host's page cache survives. So:
# a raw image, cache=none (O_DIRECT, no QEMU cache in between, and a volatile write cache shown
# to the guest, whose ext4 then sends the flushes it sends to an eMMC). Not unsafe (flushes
# ignored), not qcow2 (metadata cached in QEMU), not directsync (no write cache, no flush path).
# The guest keeps dirty data up to 10 min (ext4 commit=600, vm.dirty_*) instead of 5 to 30 s:
# whatever our code did not fsync is lost at every cut, not only when the cut is quick.
# BOOT_APPEND: more of the kernel's command line, which the guest reads (the campaign's
# tope.freeze=<failpoint>, test/system/powercut-vm.ts).
boot() {
  [ $# -eq 3 ] || die "usage: vm.sh boot DISK PAYLOAD CONSOLE"
  exec qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" \
    -append "root=/dev/vda rw rootflags=commit=600 console=ttyS0 quiet systemd.show_status=error sysctl.vm.dirty_expire_centisecs=60000 sysctl.vm.dirty_writeback_centisecs=60000 systemd.journald.forward_to_console=1${BOOT_APPEND:+ $BOOT_APPEND}" \
    -drive file="$1",if=virtio,format=raw,cache=none,aio=threads \
    -drive file="$2",if=virtio,format=raw,readonly=on \
    -nodefaults -display none -no-reboot \
    -serial file:"$3" -serial stdio < /dev/null
}

cmd=${1:-}; shift || true
case $cmd in
  prepare) prepare ;;
  run) run "$@" ;;
  payload) [ $# -ge 2 ] || die "usage: vm.sh payload IMG ENTRY [SRC:DST...]"; make_payload "$@" ;;
  disk) disk "$@" ;;
  boot) boot "$@" ;;
  *) sed -n '2,24p' "$SELF" >&2; exit 2 ;;
esac
