#!/bin/bash
# An export that runs out of space (a 1 MiB tmpfs, a disk with 8 MiB of
# data): the job ends in Exception (10), ErrorDescription says "No space
# left", and nothing is left in the export directory.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires_root

mk_store vm1 sda:32M
write_pattern "$(img_of vm1 sda)" 0x4e 8M 8M
SMALL=$TMPROOT/small
mkdir "$SMALL"
mount -t tmpfs -o size=1M,mode=0755 rpfs-test "$SMALL" 2>/dev/null ||
  skip "cannot mount a tmpfs here"
cleanup_add "umount -l $(printf %q "$SMALL")"

MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
mkdir "$MNT/vm1/referencepoints/rp1"

step "export into the 1 MiB tmpfs: the call starts a job"
start_export "$MNT/vm1/referencepoints/rp1" "$SMALL"
wait_job_done "$MNT/jobs/$JOB" 120

step "the job ends in Exception (10) and says 'No space left'"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
echo "   ErrorDescription: $desc"
[[ $desc == *"No space left"* ]] || fail "ErrorDescription does not mention 'No space left': $desc"
code=$(cat "$MNT/jobs/$JOB/ErrorCode")
[[ $code =~ ^327[0-9][0-9]$ ]] || fail "ErrorCode '$code' is not a return value of section 6"

step "nothing is left in the directory"
assert_empty_dir "$SMALL"

umount_rpfs "$MNT"
pass
