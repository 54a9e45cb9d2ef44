#!/bin/bash
# Several exports of different reference points run at once (issue: "several
# exports of different reference points may run at once"), each exact.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G
fill_busy "$(img_of vm1 sda)"
# The content at rp1, read before rpfs's daemon holds the image.
qemu-img convert -O raw "$(img_of vm1 sda)" "$WORK/at-rp1.raw"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
DISK=$MNT/vm1/disks/sda

step "rp1, a change, rp2; the expected content of each"
mkdir "$RPS/rp1"
fill_file "$DISK" 0x77 100M 2M
cp --sparse=always "$DISK" "$WORK/at-rp2.raw"
mkdir "$RPS/rp2"

step "export rp1 and rp2 at the same time"
E1=$(new_dir e1)
E2=$(new_dir e2)
start_export "$RPS/rp1" "$E1"
J1=$JOB
start_export "$RPS/rp2" "$E2"
J2=$JOB
s1=$(job_state "$J1")
[[ $s1 == 4 || $s1 == 3 ]] ||
  fail "the first export ended ($s1) before the second started: raise RPFS_TEST_BUSY_MB"
echo "   job $J1 state $s1 while job $J2 started"
wait_job_done "$MNT/jobs/$J1"
wait_job_done "$MNT/jobs/$J2"
assert_job_completed "$J1"
assert_job_completed "$J2"

step "each export holds its own reference point"
for n in 1 2; do
  d=E$n
  qemu-img convert -O raw "${!d}/vm1/disks/sda.qcow2" "$WORK/got$n.raw"
  cmp "$WORK/got$n.raw" "$WORK/at-rp$n.raw" || fail "export of rp$n differs"
done
umount_rpfs "$MNT"
pass
