#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c, eval)
# mkdir/rmdir in <system>/referencepoints/ create and destroy reference points
# (interface.md 3, 5.1, 5.2); their properties follow the value formats; the
# change tracking of the ones left is persistent in the images.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
ISO='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'

step "mkdir rp1 creates a reference point"
t0=$(date -u +%s)
mkdir "$RPS/rp1"
t1=$(date -u +%s)
assert_eq "$(ls "$RPS")" rp1 "ls referencepoints"
rp=$RPS/rp1

step "its properties: type 1, crash consistent, with data, both disks"
assert_file_eq "$rp/ElementName" rp1
assert_file_eq "$rp/ReferencePointType" 1
assert_file_eq "$rp/ConsistencyLevel" 2
assert_file_eq "$rp/HasAssociatedData" true
assert_file_eq "$rp/VirtualDiskIdentifiers" $'sda\nsdb'
assert_file_eq "$rp/VirtualSystemIdentifier" "$(cat "$MNT/vm1/VirtualSystemIdentifier")"
[[ -n $(cat "$rp/InstanceID") ]] || fail "empty InstanceID"
mapfile -t rct1 <"$rp/ResilientChangeTrackingIdentifiers"
assert_eq "${#rct1[@]}" 2 "number of ResilientChangeTrackingIdentifiers lines"
# One tracking bitmap per reference point, of the same name on every disk
# (docs/reference.md): rpfs-<sequence>-<InstanceID>.
for id in "${rct1[@]}"; do
  [[ $id == "rpfs-00000001-$(cat "$rp/InstanceID")" ]] ||
    fail "ResilientChangeTrackingIdentifiers line '$id' is not the bitmap of rp1"
done
ctime=$(cat "$rp/CreationTime")
assert_match "$ctime" "$ISO" "CreationTime"
ct=$(date -u -d "$ctime" +%s)
((ct >= t0 - 2 && ct <= t1 + 2)) || fail "CreationTime $ctime is not the time of the mkdir"
assert_eq "$(listing "$rp/disks")" "sda sdb" "ls rp1/disks"
assert_file_eq "$rp/ExportSettingData/BaseReferencePoint" ""
assert_file_eq "$rp/ExportSettingData/DisksToExport" ""

step "mkdir is a CreateReferencePoint call: a completed job of type 201"
read_result "$MNT/vm1/CreateReferencePoint"
assert_eq "$RV" 0 "ReturnValue of mkdir rp1"
assert_file_eq "$MNT/jobs/$JOB/JobType" 201
assert_file_eq "$MNT/jobs/$JOB/JobState" 7
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 0
assert_eq "$(basename "$(readlink "$rp/job")")" "$JOB" "rp1/job symlink"
[[ -d $rp/job/ ]] || fail "rp1/job does not lead to the job directory"

step "a second reference point gets its own ids"
mkdir "$RPS/rp2"
assert_eq "$(listing "$RPS")" "rp1 rp2" "ls referencepoints"
[[ $(cat "$RPS/rp2/InstanceID") != "$(cat "$rp/InstanceID")" ]] || fail "rp1 and rp2 share an InstanceID"
mapfile -t rct2 <"$RPS/rp2/ResilientChangeTrackingIdentifiers"
[[ ${rct2[0]} != "${rct1[0]}" ]] || fail "rp1 and rp2 share a ResilientChangeTrackingIdentifier"

step "bad names are refused: '..' (EEXIST), 65 characters, a space, a colon (EINVAL)"
export RPS
assert_fails_with EEXIST 'mkdir "$RPS/.."'
long65=$(printf 'a%.0s' {1..65})
export NAME
for NAME in "$long65" "rp 3" "rp:3"; do
  assert_fails_with EINVAL 'mkdir "$RPS/$NAME"'
  read_result "$MNT/vm1/CreateReferencePoint"
  assert_eq "$RV" 32773 "ReturnValue of mkdir '$NAME'"
  assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 32773
  [[ ! -e $RPS/$NAME ]] || fail "'$NAME' exists after a refused mkdir"
done

step "a duplicate name is refused (EEXIST) and rp2 stays as it was"
id2=$(cat "$RPS/rp2/InstanceID")
assert_fails_with EEXIST 'mkdir "$RPS/rp2"'
assert_file_eq "$RPS/rp2/InstanceID" "$id2"

step "a 64-character name is fine"
long64=$(printf 'b%.0s' {1..64})
mkdir "$RPS/$long64"
assert_file_eq "$RPS/$long64/ElementName" "$long64"
rmdir "$RPS/$long64"

step "rmdir rp1 removes it; rp2 stays"
rmdir "$RPS/rp1"
assert_eq "$(ls "$RPS")" rp2 "ls referencepoints after rmdir rp1"
[[ ! -e $RPS/rp1 ]] || fail "rp1 still there"
assert_fails_with ENOENT 'rmdir "$RPS/rp1"'

step "after unmount the images carry rp2's tracking as persistent bitmaps, not in use"
umount_rpfs "$MNT"
disks=(sda sdb)
for i in 0 1; do
  img=$(img_of vm1 "${disks[i]}")
  bitmaps=$(bitmaps_of "$img")
  echo "   ${disks[i]} bitmaps: $(echo "$bitmaps" | tr '\n' ';')"
  has_bitmap "$img" "${rct2[i]}" || fail "${disks[i]} has no bitmap named ${rct2[i]} (rp2's tracking)"
  ! has_bitmap "$img" "${rct1[i]}" || fail "${disks[i]} still has rp1's bitmap ${rct1[i]}"
  assert_no_bitmap_in_use "$img"
  qemu-img check -q "$img" || fail "qemu-img check of ${disks[i]} failed"
done

pass
