#!/bin/bash
# ImportReferencePointMetadata (interface.md 5.5): after the store is lost,
# a reference point comes back from the config and referencepoint files of
# its export, as RCT based without associated data, because the disks still
# carry its tracking; it then serves as the base of an exact differential
# export.  Files that are not an export's, or a reference point whose
# tracking the disks no longer carry, are refused with the reason.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
DISK=$MNT/vm1/disks/sda

step "rp1 and a full export of it; rp0 destroyed after its export"
mkdir "$RPS/rp0"
E0=$(new_dir e0)
export_rp "$RPS/rp0" "$E0"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1"
ID1=$(cat "$RPS/rp1/InstanceID")
rmdir "$RPS/rp0"
umount_rpfs "$MNT"

step "the store's state is lost"
rm -rf "$STORE/state"

step "mount again: no reference point; change the disk"
mount_rpfs "$STORE" "$MNT"
assert_eq "$(listing "$RPS")" "" "reference points in a lost store"
fill_file "$DISK" 0x5e 4M 128K
fill_file "$DISK" 0x5f 17M 64K

step "files that are not an export's are refused (EINVAL)"
method_refused EINVAL 32773 "$MNT/vm1/ImportReferencePointMetadata" \
  "$E1/vm1/config"$'\n'"$E1/vm1/config"$'\n'
# One line only: a request still coming as far as the write knows; the call
# at close(2) fails, and the result line says why.
printf '%s\n' "$E1/vm1/config" >"$MNT/vm1/ImportReferencePointMetadata"
read -r rv _ <"$MNT/vm1/ImportReferencePointMetadata"
assert_eq "$rv" 32773 "ReturnValue of an import with one line"
method_refused EINVAL 32773 "$MNT/vm1/ImportReferencePointMetadata" \
  "relative/config"$'\nrelative/referencepoint\n'

step "a reference point whose tracking the disk no longer carries is refused (EPERM)"
method_refused EPERM 32775 "$MNT/vm1/ImportReferencePointMetadata" \
  "$E0/vm1/config"$'\n'"$E0/vm1/referencepoint"$'\n'
echo "   ErrorDescription: $(cat "$MNT/jobs/$JOB/ErrorDescription")"
assert_eq "$(listing "$RPS")" "" "reference points after refused imports"

step "import rp1: RCT based, no data, same InstanceID"
printf '%s\n%s\n' "$E1/vm1/config" "$E1/vm1/referencepoint" \
  >"$MNT/vm1/ImportReferencePointMetadata"
read -r rv job _ <"$MNT/vm1/ImportReferencePointMetadata"
assert_eq "$rv" 0 "ReturnValue of the import"
assert_file_eq "$MNT/jobs/$job/JobType" 209
assert_eq "$(listing "$RPS")" "rp1" "reference points after the import"
assert_file_eq "$RPS/rp1/InstanceID" "$ID1"
assert_file_eq "$RPS/rp1/ReferencePointType" 2
assert_file_eq "$RPS/rp1/HasAssociatedData" false
method_refused EINVAL 32773 "$MNT/vm1/ImportReferencePointMetadata" \
  "$E1/vm1/config"$'\n'"$E1/vm1/referencepoint"$'\n'

step "rp2 exported differentially from the imported rp1 is exact"
cp --sparse=always "$DISK" "$WORK/at-rp2.raw"
mkdir "$RPS/rp2"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
# The base's export is not known to the new store: the image has no
# backing file; rebase it onto rp1's export to get the whole disk.
img=$E2/vm1/disks/sda.qcow2
qemu-img rebase -u -F qcow2 -b "$E1/vm1/disks/sda.qcow2" "$img"
qemu-img convert -O raw "$img" "$WORK/rp2.raw"
cmp "$WORK/rp2.raw" "$WORK/at-rp2.raw" || fail "rp2's chain differs from the disk at rp2"
alloc_ranges "$img" >"$WORK/got.ranges"
ranges 4M:128K 17M:64K >"$WORK/changed.ranges"
[[ -s $WORK/got.ranges ]] || fail "the differential image holds nothing"
assert_ranges_within "$img" "$WORK/got.ranges" "$WORK/changed.ranges"

umount_rpfs "$MNT"
pass
