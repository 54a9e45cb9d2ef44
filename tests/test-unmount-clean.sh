#!/bin/bash
# Unmounting during a running export (interface.md 1): rpfs exits by itself,
# no QEMU process and no temporary export directory is left, the images pass
# qemu-img check and their tracking bitmaps are written back (not in-use).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G sdb:16M
fill_busy "$(img_of vm1 sda)"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

step "rp1, export of rp1 running"
mkdir "$RPS/rp1"
mapfile -t rct <"$RPS/rp1/ResilientChangeTrackingIdentifiers"
E=$(new_dir e1)
start_export "$RPS/rp1" "$E"
wait_running "$JOB" "$E"

step "fusermount3 -u: rpfs exits cleanly, no QEMU process is left"
umount_rpfs "$MNT"

step "no temporary export directory is left"
assert_empty_dir "$E"

step "the images pass qemu-img check; rp1's bitmaps are there and not in use"
disks=(sda sdb)
for i in 0 1; do
  img=$(img_of vm1 "${disks[i]}")
  qemu-img check -q "$img" || fail "qemu-img check of ${disks[i]} failed"
  assert_no_bitmap_in_use "$img"
  has_bitmap "$img" "${rct[i]}" || fail "${disks[i]} lacks rp1's bitmap ${rct[i]}"
done

step "a new mount still has rp1"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RPS/rp1/ElementName" rp1
umount_rpfs "$MNT"
pass
