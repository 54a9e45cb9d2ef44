#!/bin/bash
# Differential exports (interface.md 5.2, 5.3): with BaseReferencePoint the
# images hold only the clusters changed since the base and name the base's
# exported image as backing file, so qemu-img convert of the newest image is
# the whole disk at the reference point; still exact after rmdir of a
# reference point in between.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
DISK=$MNT/vm1/disks/sda
RPS=$MNT/vm1/referencepoints

# capture N: the content of the disks now, while nothing writes, as the
# expected content at rpN; then mkdir rpN.
capture() {
  cp --sparse=always "$DISK" "$WORK/sda-at-rp$1.raw"
  cp --sparse=always "$MNT/vm1/disks/sdb" "$WORK/sdb-at-rp$1.raw"
  mkdir "$RPS/rp$1"
}

step "rp1, change, rp2, change, rp3, change"
capture 1
fill_file "$DISK" 0xa1 2M 256K
fill_file "$DISK" 0xa2 20M 64K
capture 2
fill_file "$DISK" 0xb1 2M 64K # rewrites part of the first change
fill_file "$DISK" 0xb2 8M 1M
capture 3
fill_file "$DISK" 0xc1 0 1M # after rp3: no export may see it
fill_file "$DISK" 0xc2 30M 1M
ranges 2M:256K 20M:64K >"$WORK/changed-1-2"
ranges 2M:64K 8M:1M >"$WORK/changed-2-3"
cat "$WORK/changed-1-2" "$WORK/changed-2-3" >"$WORK/changed-1-3"
: >"$WORK/nothing"

# check_export DIR N BASEDIR CHANGED: DIR/vm1 holds the disks at rpN, each
# image backed by the same disk's image in BASEDIR/vm1 and holding only
# data in the CHANGED ranges (sda) or none at all (sdb, never written).
check_export() {
  local x=$1/vm1 n=$2 base=$3 changed=$4 d img
  (cd "$x" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed in $x"
  for d in sda sdb; do
    img=$x/disks/$d.qcow2
    qemu-img check -q "$img" || fail "qemu-img check $img failed"
    assert_eq "$(realpath "$(backing_of "$img")")" "$(realpath "$base/vm1/disks/$d.qcow2")" \
      "backing file of $img"
    assert_eq "$(backing_format_of "$img")" qcow2 "backing format of $img"
    raw_of "$img" "$WORK/check.raw"
    cmp "$WORK/check.raw" "$WORK/$d-at-rp$n.raw" || fail "$img (with its backing chain) is not $d at rp$n"
    alloc_ranges "$img" >"$WORK/check.ranges"
    if [[ $d == sda ]]; then
      assert_ranges_within "$img" "$WORK/check.ranges" "$changed"
    else
      assert_ranges_within "$img" "$WORK/check.ranges" "$WORK/nothing"
    fi
  done
}

step "full export of rp1"
E1=$(new_dir full-rp1)
export_rp "$RPS/rp1" "$E1"
for d in sda sdb; do
  raw_of "$E1/vm1/disks/$d.qcow2" "$WORK/check.raw"
  cmp "$WORK/check.raw" "$WORK/$d-at-rp1.raw" || fail "full export of rp1: $d differs"
done

step "rp2 with base rp1 (given by InstanceID, as an extra line)"
E2=$(new_dir diff-rp2)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=$(cat "$RPS/rp1/InstanceID")"
assert_file_eq "$MNT/jobs/$JOB/BaseReferencePointId" "$(cat "$RPS/rp1/InstanceID")"
assert_file_eq "$MNT/jobs/$JOB/ReferencePointId" "$(cat "$RPS/rp2/InstanceID")"
check_export "$E2" 2 "$E1" "$WORK/changed-1-2"

step "rp3 with base rp2 (given by name, in ExportSettingData)"
echo rp2 >"$RPS/rp3/ExportSettingData/BaseReferencePoint"
assert_file_eq "$RPS/rp3/ExportSettingData/BaseReferencePoint" rp2
E3=$(new_dir diff-rp3-rp2)
export_rp "$RPS/rp3" "$E3"
check_export "$E3" 3 "$E2" "$WORK/changed-2-3"

step "rp3 with base rp1 (the extra line overrides the setting)"
E4=$(new_dir diff-rp3-rp1)
export_rp "$RPS/rp3" "$E4" "BaseReferencePoint=rp1"
check_export "$E4" 3 "$E1" "$WORK/changed-1-3"
assert_file_eq "$RPS/rp3/ExportSettingData/BaseReferencePoint" rp2

step "rmdir rp2 in the middle, then rp3 with base rp1 is still exact"
echo rp1 >"$RPS/rp3/ExportSettingData/BaseReferencePoint"
rmdir "$RPS/rp2"
assert_eq "$(listing "$RPS")" "rp1 rp3" "reference points after rmdir rp2"
E5=$(new_dir diff-rp3-rp1-after-rmdir)
export_rp "$RPS/rp3" "$E5"
check_export "$E5" 3 "$E1" "$WORK/changed-1-3"

umount_rpfs "$MNT"
pass
