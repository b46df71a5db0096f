#!/usr/bin/env bash
# fresh-tmpdir.sh COMMAND [ARG...]: runs COMMAND with TMPDIR a new, empty directory of its own,
# then removes that directory and fails, naming each entry, if COMMAND left anything in it.
# `make test` runs the tests so. Each test's temporary directories go when its process exits
# (test/helpers/temp-dir.ts); what a test forgets, and what a tool it starts leaves behind
# (Chromium's org.chromium.Chromium.*, lintian's mldbm-*), lands here and fails the run that left
# it. A count of /tmp before and after could not tell: other processes on the machine come and go
# there meanwhile.
set -uo pipefail
run_tmp=$(mktemp -d -t tope-test-run.XXXXXX) || exit 1
# --one-file-system: a mount a test failed to take down (disk-full's tmpfs) is not emptied through
trap 'rm -rf --one-file-system "$run_tmp"' EXIT
# 1777, as /tmp is: the services' and sandboxes' own users may write into the tests' directories,
# and the trusted keys' check refuses a directory above them that others could write to unless
# it is sticky
chmod 1777 "$run_tmp" || exit 1
TMPDIR=$run_tmp "$@"
status=$?
left=$(find "$run_tmp" -mindepth 1 -maxdepth 1 -printf '  %f\n' | sort)
if [ -n "$left" ]; then
  printf 'fresh-tmpdir.sh: left behind in TMPDIR (%s), now removed:\n%s\n' "$run_tmp" "$left" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
