#!/bin/bash
# A log based reference point keeps its point-in-time data across a clean
# unmount and mount (scratch layers re-attached under a new one), and stays
# exact when blocks already preserved are overwritten again after the
# remount.  If something writes the disk while rpfs is not running, the data
# is dropped (HasAssociatedData false) rather than served wrong.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
DISK=$MNT/vm1/disks/sda

step "rp1, then overwrite part of the disk"
cp --sparse=always "$DISK" "$WORK/at-rp1.raw"
mkdir "$RP"
fill_file "$DISK" 0x11 1M 512K
umount_rpfs "$MNT"

step "after a clean remount rp1 still has its data"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RP/HasAssociatedData" true
cmp "$RP/disks/sda" "$WORK/at-rp1.raw" || fail "rp1 differs right after the remount"

step "overwrite the same blocks again, and new ones: rp1 is still exact"
fill_file "$DISK" 0x22 1M 512K
fill_file "$DISK" 0x33 8M 64K
cmp "$RP/disks/sda" "$WORK/at-rp1.raw" || fail "rp1 differs after writes following the remount"
E=$(new_dir e)
export_rp "$RP" "$E"
qemu-img convert -O raw "$E/vm1/disks/sda.qcow2" "$WORK/export.raw"
cmp "$WORK/export.raw" "$WORK/at-rp1.raw" || fail "the export of rp1 differs"

step "a second remount works the same (one more layer)"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RP/HasAssociatedData" true
fill_file "$DISK" 0x44 1M 1M
cmp "$RP/disks/sda" "$WORK/at-rp1.raw" || fail "rp1 differs after the second remount"
umount_rpfs "$MNT"

step "a write to the image while rpfs is away: the data is dropped"
qemu-io -f qcow2 -c "write -P 0x55 16M 64K" "$(img_of vm1 sda)" >/dev/null
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RP/HasAssociatedData" false
assert_file_eq "$RP/ChangeTracking" intact
! compgen -G "$STORE/state/vm1/rp/rp1/*fleece*" >/dev/null || fail "scratch images left behind"
umount_rpfs "$MNT"
pass
