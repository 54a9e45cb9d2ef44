#!/bin/bash
# The fleecing chain (issue 10 §3): with several log based reference points
# a guest write copies the old data once, not once per reference point
# (the store grows by about the size of the write), and every reference
# point still reads as the disk was at its creation: through FUSE, in a
# full export, as the target of a differential export.  RemoveAssociatedData
# and rmdir of one in the middle keep the older ones exact (its scratch is
# kept for them), and so do clean remounts (the chain re-attached, a kept
# newest one under a new layer each time), and the kept scratch goes once
# no older one has data.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:64M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
DISK=$MNT/vm1/disks/sda
RPS=$MNT/vm1/referencepoints
N=5

scratch_bytes() {
  find "$STORE/state/vm1" -name '*fleece*' -printf '%b\n' |
    awk '{ s += $1 * 512 } END { print s + 0 }'
}

# remove_data K: RemoveAssociatedData of rpK, to its job's end.
remove_data() {
  call_method "$RPS/rp$1/RemoveAssociatedData" $'1\n'
  case $RV in
    0) ;;
    4096) wait_job_done "$MNT/jobs/$JOB" ;;
    *) fail "RemoveAssociatedData of rp$1 returned $RV ($DESC)" ;;
  esac
  assert_file_eq "$RPS/rp$1/HasAssociatedData" false
}

step "$N log based reference points, a change after each"
fill_file "$DISK" 0x66 32M 16M
fill_file "$DISK" 0x55 24M 4M # not written again until after a remount
for ((k = 1; k <= N; k++)); do
  cp --sparse=always "$DISK" "$WORK/at-rp$k.raw"
  mkdir "$RPS/rp$k"
  fill_file "$DISK" "0x$(printf %02x $((0x20 + k)))" "$((k * 4))M" 1M
done

step "a 16 MiB write over old data copies it once, not $N times"
before=$(scratch_bytes)
fill_file "$DISK" 0x77 32M 16M
sync
after=$(scratch_bytes)
grown=$((after - before))
echo "scratch grew by $grown bytes"
((grown >= 16 * 1024 * 1024)) || fail "the old data was not preserved ($grown bytes)"
((grown < 24 * 1024 * 1024)) || fail "the old data was copied more than once ($grown bytes for 16 MiB)"

step "every reference point reads as the disk was"
for ((k = 1; k <= N; k++)); do
  cmp "$RPS/rp$k/disks/sda" "$WORK/at-rp$k.raw" || fail "rp$k/disks/sda differs"
done

step "full export of rp1 (through the whole chain), rp3 from rp1"
E1=$(new_dir full1)
export_rp "$RPS/rp1" "$E1"
raw_of "$E1/vm1/disks/sda.qcow2" "$WORK/check.raw"
cmp "$WORK/check.raw" "$WORK/at-rp1.raw" || fail "full export of rp1 differs"
E2=$(new_dir diff3)
export_rp "$RPS/rp3" "$E2" "BaseReferencePoint=rp1"
raw_of "$E2/vm1/disks/sda.qcow2" "$WORK/check.raw"
cmp "$WORK/check.raw" "$WORK/at-rp3.raw" || fail "rp3 from rp1 differs"

step "RemoveAssociatedData of rp3, rmdir rp4: rp1, rp2 and rp5 stay exact"
remove_data 3
rmdir "$RPS/rp4"
fill_file "$DISK" 0x78 8M 8M
for k in 1 2 5; do
  cmp "$RPS/rp$k/disks/sda" "$WORK/at-rp$k.raw" || fail "rp$k/disks/sda differs after rp3, rp4 lost their data"
done
assert_file_eq "$RPS/rp3/HasAssociatedData" false

step "after a clean remount the chain is whole again"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
fill_file "$DISK" 0x79 0 32M
for k in 1 2 5; do
  assert_file_eq "$RPS/rp$k/HasAssociatedData" true
  cmp "$RPS/rp$k/disks/sda" "$WORK/at-rp$k.raw" || fail "rp$k/disks/sda differs after the remount"
done

step "rmdir rp5, the newest (kept: its job runs on); two remounts with writes between"
rmdir "$RPS/rp5"
fill_file "$DISK" 0x7a 40M 4M
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
fill_file "$DISK" 0x7b 24M 4M # preserved in the kept one's new layer only
fill_file "$DISK" 0x7b 52M 4M # so is this never-written range
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
fill_file "$DISK" 0x7c 24M 32M
for k in 1 2; do
  cmp "$RPS/rp$k/disks/sda" "$WORK/at-rp$k.raw" || fail "rp$k/disks/sda differs after the second remount"
done

step "when no older one needs them, kept scratch files go"
for k in 1 2; do
  remove_data "$k"
done
[[ ! -d $STORE/state/vm1/kept ]] || [[ -z $(ls -A "$STORE/state/vm1/kept") ]] ||
  fail "kept scratch left behind: $(ls "$STORE/state/vm1/kept")"
[[ -z $(find "$STORE/state/vm1" -name '*fleece*') ]] ||
  fail "scratch images left behind: $(find "$STORE/state/vm1" -name '*fleece*')"
umount_rpfs "$MNT"
pass
