#!/bin/bash
# KeepAssociatedData (docs/reference.md): an export with
# KeepAssociatedData=false (a line of the request, or the setting) drops the
# reference point's point-in-time data once the export is complete, so the
# store stops growing with every overwrite; the reference point still serves
# as an exact base.  The setting is true by default, survives a remount, and
# refuses anything but true and false.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
DISK=$MNT/vm1/disks/sda
fleece_files() { find "$STORE/state/vm1/rp/$1" -name '*.fleece*' | wc -l; }

step "the setting: true by default, only true or false"
mkdir "$RPS/rp1"
SET=$RPS/rp1/ExportSettingData/KeepAssociatedData
assert_file_eq "$SET" true
export _S=$SET
assert_fails_with EINVAL 'echo maybe > "$_S"'
assert_file_eq "$SET" true
(($(fleece_files rp1) > 0)) || fail "rp1 keeps no point-in-time data to drop"

step "an export of rp1 with KeepAssociatedData=false: data gone once complete"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" "KeepAssociatedData=false"
assert_file_eq "$RPS/rp1/HasAssociatedData" false
assert_eq "$(fleece_files rp1)" 0 "fleecing images of rp1 in the store"
assert_file_eq "$SET" true

step "the guest writes on; rp2 with the setting false; a differential from rp1"
fill_file "$DISK" 0x7a 3M 256K
cp --sparse=always "$DISK" "$WORK/at-rp2.raw"
mkdir "$RPS/rp2"
method_refused EINVAL 32773 "$RPS/rp2/ExportReferencePoint" \
  "$(new_dir e2b)"$'\nKeepAssociatedData=no\n'
echo false >"$RPS/rp2/ExportSettingData/KeepAssociatedData"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RPS/rp2/ExportSettingData/KeepAssociatedData" false
fill_file "$DISK" 0x7b 3M 64K # after rp2
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
assert_file_eq "$RPS/rp2/HasAssociatedData" false
assert_eq "$(fleece_files rp2)" 0 "fleecing images of rp2 in the store"
qemu-img convert -O raw "$E2/vm1/disks/sda.qcow2" "$WORK/restored.raw"
cmp "$WORK/restored.raw" "$WORK/at-rp2.raw" ||
  fail "the differential from rp1 (data dropped) does not restore rp2"

umount_rpfs "$MNT"
pass
