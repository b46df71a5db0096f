#!/bin/sh
# Runs inside a freshly booted sandbox (its root is volatile): installs tope-updater's units
# as `make install` laid them out under /mnt/dest, the test's helper units, and enables the
# target. /var/lib/tope-updater, /opt/tope and /var/lib/tope-test persist across reboots.
# HELPERS_ONLY=1: only the test's helper units (the test installs tope-updater itself, as a .deb).
set -eu
if [ -z "${HELPERS_ONLY:-}" ]; then
cp /mnt/dest/usr/lib/systemd/system/* /etc/systemd/system/
install -Dm644 /mnt/dest/usr/lib/sysusers.d/tope-updater.conf /etc/sysusers.d/tope-updater.conf
install -Dm644 /mnt/dest/usr/lib/tmpfiles.d/tope-updater.conf /etc/tmpfiles.d/tope-updater.conf
systemd-sysusers
systemd-tmpfiles --create tope-updater.conf
cat > /etc/default/tope-updater <<CONF
TOPE_ALLOW_HTTP=1
TOPE_ALLOWED_URL_NETS=127.0.0.0/8
TOPE_RETRY_BASE_MS=200
TOPE_IDLE_EXIT_MS=${IDLE_MS:-2000}
TOPE_PROBATION_MS=${PROBATION_MS:-1500}
TOPE_UNIT_START_TIMEOUT_MS=10000
TOPE_MANAGED_UNITS=printerd.service
CONF
fi
# the device trusts the tests' signing key and is a tope-test, as a vendor's image would set it up
# (before a .deb is installed, too: the image brings them, not the package)
install -d /etc/tope-updater/keys.d
cp /var/lib/tope-test/trust/keys.d/*.pub /etc/tope-updater/keys.d/
cp /var/lib/tope-test/trust/product-id /etc/tope-updater/product-id
mkdir -p /var/lib/tope-test /srv/packages
cat > /etc/systemd/system/tope-test-origin.service <<UNIT
[Service]
Environment=ORIGIN_DIR=/var/lib/tope-test/packages
ExecStart=/usr/bin/node /mnt/test/origin-server.js
UNIT
cat > /etc/systemd/system/tope-test-origin-slow.service <<UNIT
[Service]
Environment=ORIGIN_DIR=/var/lib/tope-test/packages ORIGIN_RATE=300000 ORIGIN_PORT=8001
ExecStart=/usr/bin/node /mnt/test/origin-server.js
UNIT
cat > /etc/systemd/system/tope-test-device-api.service <<UNIT
[Service]
Environment=RECORD_FILE=/var/lib/tope-test/reports.jsonl RECORD_PORT=${RECORD_PORT}
ExecStart=/usr/bin/node /mnt/test/device-api-recorder.js
UNIT
cat > /etc/systemd/system/printerd.service <<UNIT
[Unit]
Description=stand-in printer service updated by the test packages
[Service]
ExecStart=/usr/bin/node /mnt/test/printerd.js
Restart=on-failure
RestartSec=200ms
UNIT
systemctl daemon-reload
systemctl start tope-test-origin.service tope-test-origin-slow.service tope-test-device-api.service
if [ -e /opt/tope/versions/current/bin/printerd ]; then systemctl start printerd.service; fi
if [ -z "${HELPERS_ONLY:-}" ]; then systemctl enable --now tope-updater.target >/dev/null 2>&1; fi
