#!/bin/bash
# A shut-off libvirt domain's reference point keeps its point-in-time data
# (the images) exactly as long as nothing has written the images since it
# was made, as the reference point's own bitmap shows, across remounts too:
#   - rp0 is made on the images of a domain that never ran, exported in
#     full; then qemu-io writes the image while rpfs is mounted (rpfs holds
#     nothing between requests); rp1 is made;
#   - rp0's next export is caught: its job ends in Exception with 32775, nothing is left
#     in the export directory, HasAssociatedData turns false;
#   - remounted with nothing written since: rp1 keeps its data (the log says
#     so); its disk reads as the image did at rp1, and its differential from
#     rp0 restores that disk;
#   - remounted after qemu-io wrote the image again: rp1's data is dropped,
#     and the log names the disk.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
DOM=rpfs-lvdata-$$

lv_store
IMG=$IMAGES/a.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x22 40M 2M' "$IMG" >/dev/null
echo "libvirt-domain = $DOM" >"$STORE/systems/db.conf"
MNT=$TMPROOT/mnt
RPS=$MNT/db/referencepoints
LV_NO_START=1 lv_define "$DOM" "$IMG"
# scribble PATTERN OFFSET: what a tool outside rpfs writes into the image.
scribble() {
  qemu-io -f qcow2 -c "write -P $1 $2 64k" "$IMG" >/dev/null ||
    fail "qemu-io could not write the image"
}
mount_rpfs "$STORE" "$MNT"

step "rp0 on the images of a domain that never ran, exported in full"
mkdir "$RPS/rp0"
assert_file_eq "$RPS/rp0/HasAssociatedData" true
E0=$(new_dir e0)
export_rp "$RPS/rp0" "$E0"

step "the image is written while rpfs is mounted; rp1 is made after"
scribble 0x33 8M
mkdir "$RPS/rp1"
raw_of "$IMG" "$WORK/rp1.raw"

step "rp0's next export finds the image changed: 32775, nothing left"
E0B=$(new_dir e0b)
start_export "$RPS/rp0" "$E0B"
wait_job_done "$MNT/jobs/$JOB"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_file_eq "$MNT/jobs/$JOB/ErrorCode" 32775
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "disk vda was written after" \
  "the reason of the failed export"
assert_empty_dir "$E0B"
assert_file_eq "$RPS/rp0/HasAssociatedData" false
assert_file_eq "$RPS/rp1/HasAssociatedData" true

step "remounted, nothing written since: rp1 keeps its data"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RPS/rp1/HasAssociatedData" true
assert_file_eq "$RPS/rp0/HasAssociatedData" false
grep -q "db/rp1: point-in-time data kept" "${_MNT_LOG[$MNT]}" ||
  fail "rpfs's log does not say that rp1 kept its data"
cmp "$RPS/rp1/disks/vda" "$WORK/rp1.raw" || fail "rp1's disks/vda is not the disk at rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" BaseReferencePoint=rp0
assert_eq "$(realpath "$(backing_of "$E1/db/disks/vda.qcow2")")" \
  "$E0/db/disks/vda.qcow2" "rp1's differential's backing"
raw_of "$E1/db/disks/vda.qcow2" "$WORK/e1.raw"
cmp "$WORK/e1.raw" "$WORK/rp1.raw" || fail "rp1's differential does not restore the disk at rp1"

step "remounted after the image was written again: rp1's data is dropped"
umount_rpfs "$MNT"
scribble 0x44 16M
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RPS/rp1/HasAssociatedData" false
grep -q "db/rp1: point-in-time data dropped: disk vda was written after" \
  "${_MNT_LOG[$MNT]}" || fail "rpfs's log does not say why rp1 lost its data"
[[ ! -e $RPS/rp1/disks/vda ]] || fail "rp1/disks/vda is still there"
umount_rpfs "$MNT"
pass
