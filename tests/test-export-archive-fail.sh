#!/bin/bash
# An archive export that fails or is cancelled leaves nothing behind
# (reference.md 9): out of space (a 1 MiB tmpfs) it ends in Exception with
# "No space left"; cancelled while it runs it ends Terminated; in both cases
# the ExportDirectory is empty again (no hidden file, no sidecar).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires_root

mk_store vm1 sda:1G
fill_busy "$(img_of vm1 sda)"
SMALL=$TMPROOT/small
mkdir "$SMALL"
mount -t tmpfs -o size=1M,mode=0755 rpfs-test "$SMALL" 2>/dev/null ||
  skip "cannot mount a tmpfs here"
cleanup_add "umount -l $(printf %q "$SMALL")"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"

step "Format=tar into a 1 MiB tmpfs: Exception, 'No space left', nothing left"
start_export "$RP" "$SMALL" Format=tar
wait_job_done "$MNT/jobs/$JOB" 120
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
echo "   ErrorDescription: $desc"
[[ $desc == *"No space left"* ]] || fail "ErrorDescription: $desc"
assert_file_eq "$MNT/jobs/$JOB/ErrorCode" 32768
assert_empty_dir "$SMALL"

step "cancel a running tar.zst export: Terminated, nothing left"
E=$(new_dir e)
start_export "$RP" "$E" Format=tar.zst
wait_running "$JOB" "$E"
echo 4 >"$MNT/jobs/$JOB/RequestStateChange"
wait_job_done "$MNT/jobs/$JOB" 60
assert_file_eq "$MNT/jobs/$JOB/JobState" 8
assert_empty_dir "$E"
[[ -z $(ls "$STORE/state/exports") ]] || fail "export marker left"

umount_rpfs "$MNT"
pass
