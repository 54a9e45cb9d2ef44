#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c, eval)
# The qemu-storage-daemon dies during an export (kill -9 of it alone): the
# job ends in Exception (10) with ErrorCode 32777 (system not available) and
# nothing in the export directory; the mount stays up and serves the disks
# and mkdir again.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G sdb:16M
fill_busy "$(img_of vm1 sda)"
raw_of "$(img_of vm1 sdb)" "$WORK/sdb.raw"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

step "export of rp1 running"
mkdir "$RPS/rp1"
E=$(new_dir e1)
start_export "$RPS/rp1" "$E"
wait_running "$JOB" "$E"

step "kill -9 the qemu-storage-daemon"
mapfile -t qsd < <(qsd_pids "$STORE")
((${#qsd[@]} > 0)) || fail "no qemu-storage-daemon found for the store"
kill -KILL "${qsd[@]}"

step "the job ends in Exception (10) with ErrorCode 32777 and a description"
wait_job_done "$MNT/jobs/$JOB" 60
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_file_eq "$MNT/jobs/$JOB/ErrorCode" 32777
desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
[[ -n $desc ]] || fail "empty ErrorDescription"
echo "   ErrorDescription: $desc"
assert_match "$(cat "$MNT/jobs/$JOB/status")" '^Exception' "status"

step "nothing is left in the export directory"
wait_until 10 "$E to be emptied" eval '[[ -z $(ls -A "$E") ]]'

step "the mount is still up and works: read a disk, mkdir a reference point"
mountpoint -q "$MNT" || fail "the mount went away"
rpfs_alive "$MNT" || fail "rpfs exited"
cmp "$MNT/vm1/disks/sdb" "$WORK/sdb.raw" || fail "disks/sdb does not read back after the daemon died"
mkdir "$RPS/rp2"
assert_file_eq "$RPS/rp2/HasAssociatedData" true
assert_eq "$(listing "$RPS")" "rp1 rp2" "reference points"

umount_rpfs "$MNT"
pass
