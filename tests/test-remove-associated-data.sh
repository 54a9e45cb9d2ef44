#!/bin/bash
# RemoveAssociatedData (interface.md 5.4): the point-in-time data goes
# (HasAssociatedData false, no disk contents, export refused with EPERM), the
# change tracking stays: the reference point still serves as the base of a
# newer one's differential export.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
DISK=$MNT/vm1/disks/sda

step "rp1, full export of rp1, change, rp2"
mkdir "$RPS/rp1"
E1=$(new_dir full-rp1)
export_rp "$RPS/rp1" "$E1"
fill_file "$DISK" 0xd1 6M 512K
cp --sparse=always "$DISK" "$WORK/sda-at-rp2.raw"
cp --sparse=always "$MNT/vm1/disks/sdb" "$WORK/sdb-at-rp2.raw"
mkdir "$RPS/rp2"
fill_file "$DISK" 0xd2 10M 1M # after rp2

step "echo 1 > rp1/RemoveAssociatedData"
call_method "$RPS/rp1/RemoveAssociatedData" $'1\n'
case $RV in
  0) ;;
  4096) wait_job_done "$MNT/jobs/$JOB" ;;
  *) fail "RemoveAssociatedData returned $RV ($DESC)" ;;
esac
assert_file_eq "$MNT/jobs/$JOB/JobType" 204
assert_file_eq "$MNT/jobs/$JOB/JobState" 7
assert_eq "$(basename "$(readlink "$RPS/rp1/job")")" "$JOB" "rp1/job symlink"

step "HasAssociatedData is false, rp1/disks/ is empty, rp1 stays a type 1 reference point"
assert_file_eq "$RPS/rp1/HasAssociatedData" false
assert_eq "$(ls -A "$RPS/rp1/disks" 2>/dev/null)" "" "rp1/disks"
assert_file_eq "$RPS/rp1/ReferencePointType" 1

step "exporting rp1 is refused (EPERM, 32775)"
E=$(new_dir refused)
method_refused EPERM 32775 "$RPS/rp1/ExportReferencePoint" "$E"
assert_empty_dir "$E"

step "rp2 with base rp1 still exports, exactly"
E2=$(new_dir diff-rp2)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
ranges 6M:512K >"$WORK/changed"
for d in sda sdb; do
  img=$E2/vm1/disks/$d.qcow2
  assert_eq "$(realpath "$(backing_of "$img")")" "$(realpath "$E1/vm1/disks/$d.qcow2")" "backing of $d.qcow2"
  raw_of "$img" "$WORK/check.raw"
  cmp "$WORK/check.raw" "$WORK/$d-at-rp2.raw" || fail "$d.qcow2 is not $d at rp2"
  alloc_ranges "$img" >"$WORK/check.ranges"
  [[ $d == sda ]] || : >"$WORK/changed"
  assert_ranges_within "$img" "$WORK/check.ranges" "$WORK/changed"
done

umount_rpfs "$MNT"
pass
