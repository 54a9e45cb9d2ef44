#!/bin/bash
# Point-in-time reads (interface.md 3): after mkdir rp1, writes through
# <system>/disks/<id> change the current disk, while
# referencepoints/rp1/disks/<id> keeps the content as it was at rp1.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
raw_of "$(img_of vm1 sda)" "$WORK/sda-at-rp1.raw"
raw_of "$(img_of vm1 sdb)" "$WORK/sdb-at-rp1.raw"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
DISK=$MNT/vm1/disks/sda
RP=$MNT/vm1/referencepoints/rp1

step "mkdir rp1, then overwrite data and fill a hole of the current sda"
mkdir "$RP"
cp "$WORK/sda-at-rp1.raw" "$WORK/sda-now.raw"
for f in "$DISK" "$WORK/sda-now.raw"; do
  fill_file "$f" 0xe1 512K 1M # over old data and past it
  fill_file "$f" 0xe2 20M 2M  # where the image had nothing
done

step "the current disk shows the new data"
cmp "$DISK" "$WORK/sda-now.raw" || fail "disks/sda does not show the writes"

step "rp1's disks still hold the content at rp1"
assert_eq "$(stat -c %s "$RP/disks/sda")" $((32 * 1024 * 1024)) "st_size of rp1/disks/sda"
cmp "$RP/disks/sda" "$WORK/sda-at-rp1.raw" || fail "rp1/disks/sda changed after writes to the disk"
cmp "$RP/disks/sdb" "$WORK/sdb-at-rp1.raw" || fail "rp1/disks/sdb differs from the content at rp1"

step "a second reference point sees the new data, rp1 still the old"
mkdir "$MNT/vm1/referencepoints/rp2"
fill_file "$DISK" 0xe3 0 64K
cmp "$MNT/vm1/referencepoints/rp2/disks/sda" "$WORK/sda-now.raw" || fail "rp2/disks/sda is not the content at rp2"
cmp "$RP/disks/sda" "$WORK/sda-at-rp1.raw" || fail "rp1/disks/sda changed"
fill_file "$WORK/sda-now.raw" 0xe3 0 64K

step "after unmount the image holds the writes"
umount_rpfs "$MNT"
raw_of "$(img_of vm1 sda)" "$WORK/sda-after.raw"
cmp "$WORK/sda-after.raw" "$WORK/sda-now.raw" || fail "the image does not hold the writes made through the mount"

pass
