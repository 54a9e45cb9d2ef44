#!/bin/bash
# A disk another process has open for writing when rpfs starts (a VM
# running on the image, a qemu-nbd) is not a broken definition: the mount
# comes up, the system is listed, its log line says which disk is in use,
# its methods answer 32777 (ENODEV) meanwhile, and the first request after
# the other process lets go starts the storage daemon and works.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires qemu-nbd

mk_store vm1 sda:16M
IMG=$(img_of vm1 sda)
step "qemu-nbd holds the image for writing; rpfs mounts all the same"
qemu-nbd -f qcow2 --fork --pid-file="$WORK/nbd.pid" -k "$WORK/nbd.sock" "$IMG"
cleanup_add "kill \$(cat $WORK/nbd.pid) 2>/dev/null"
export MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
assert_eq "$(listing "$MNT")" "jobs vm1" "entries of the mount"
wait_until 10 "the log line about the disk in use" \
  grep -q "disk sda ($IMG) is in use by another process" "${_MNT_LOG[$MNT]}"

step "meanwhile: 32777 (ENODEV)"
assert_fails_with ENODEV 'mkdir "$MNT/vm1/referencepoints/rp1"'
assert_eq "$(listing "$MNT/vm1/referencepoints")" "" "reference points"

step "the other process exits: the next request starts the daemon and works"
kill "$(cat "$WORK/nbd.pid")"
wait_until 10 "qemu-nbd to exit" bash -c "! kill -0 $(cat "$WORK/nbd.pid") 2>/dev/null"
mkdir "$MNT/vm1/referencepoints/rp1"
assert_file_eq "$MNT/vm1/referencepoints/rp1/HasAssociatedData" true
cmp "$MNT/vm1/disks/sda" "$MNT/vm1/referencepoints/rp1/disks/sda" ||
  fail "the point-in-time disk differs from the disk"

umount_rpfs "$MNT"
pass
