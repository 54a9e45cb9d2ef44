#!/bin/bash
# A shut-off libvirt domain is served from its disk images, and reference
# points stay valid bases across stops and starts, both ways round:
#   - rp1 is made while the domain runs (libvirt's checkpoint and backup
#     job); the domain is destroyed (QEMU stores its bitmaps as it exits);
#   - while it is off, rpfs picks that up without a remount: rpx and rp2 are
#     made on the images (virsh checkpoint-list shows them), rpx is removed
#     from the middle (its bitmap leaves the images), the current disk reads
#     as the image (and while it is open, a creation is refused with EBUSY:
#     the reader's qemu-nbd locks the image), rp2 exports in full and as a differential from rp1, both
#     equal to the image by qemu-img convert + cmp;
#   - no rpfs process holds the images: virsh start succeeds; the guest
#     writes, rp3 is made by a backup job that takes rp2 (made offline) as
#     its incremental base, and its differential from rp2 restores the same
#     disk as its full export;
#   - the domain is destroyed again and rpfs remounted while it is off: rp4
#     made on the images exports as a differential from rp3 equal to the
#     image;
#   - libvirt forgets rp4's checkpoint: ImportReferencePointMetadata into a
#     new store finds its bitmap on the image and redefines it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_SLOTS=${VM_SLOTS:-256}
DOM=rpfs-lvoff-$$

lv_store
IMG=$IMAGES/a.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
cat >"$STORE/systems/db.conf" <<EOC
libvirt-domain = $DOM
EOC
MNT=$TMPROOT/mnt
RPS=$MNT/db/referencepoints
try_mkdir() { mkdir "$1" 2>/dev/null; }
tracking() { cat "$RPS/$1/ResilientChangeTrackingIdentifiers"; }
assert_checkpoints() {
  local rp want=""
  for rp in "$@"; do want+="$(tracking "$rp")"$'\n'; done
  assert_eq "$(lv_checkpoints "$DOM")" "$(sed '/^$/d' <<<"$want" | sort)" \
    "virsh checkpoint-list"
}
# equal_to_image EXPORTDIR: the export's disk restores to the image as it is.
equal_to_image() {
  raw_of "$1/db/disks/vda.qcow2" "$WORK/exp.raw"
  raw_of "$IMG" "$WORK/img.raw"
  cmp "$WORK/exp.raw" "$WORK/img.raw" || fail "$1 is not the shut-off disk"
}

lv_define "$DOM" "$IMG"
vm_wait_seq "$DOM" 50 120
mount_rpfs "$STORE" "$MNT"

step "rp1 while the domain runs, exported in full; its data dropped"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" KeepAssociatedData=false

step "virsh destroy: the domain is served from its images without a remount"
lv_virsh destroy "$DOM" >/dev/null
assert_no_bitmap_in_use "$IMG"
has_bitmap "$IMG" "$(tracking rp1)" || fail "the image lost rp1's bitmap"
wait_until 30 "a reference point made while the domain is shut off" \
  try_mkdir "$RPS/rpx"
grep -q "domain $DOM is shut off: served from its disk images" \
  "${_MNT_LOG[$MNT]}" || fail "rpfs's log does not say it serves the images"
mkdir "$RPS/rp2"
assert_file_eq "$RPS/rp2/HasAssociatedData" true
has_bitmap "$IMG" "$(tracking rp2)" || fail "rp2's bitmap is not on the image"
assert_checkpoints rp1 rpx rp2

step "rpx removed from the middle: its bitmap and checkpoint go"
RPX=$(tracking rpx)
rmdir "$RPS/rpx"
assert_checkpoints rp1 rp2
! has_bitmap "$IMG" "$RPX" || fail "rmdir left rpx's bitmap on the image"
assert_eq "$(bitmaps_of "$IMG" | awk '{print $1}' | sort | tr '\n' ' ')" \
  "$(printf '%s\n' "$(tracking rp1)" "$(tracking rp2)" | sort | tr '\n' ' ')" \
  "the image's bitmaps"

step "the current disk reads as the image"
raw_of "$IMG" "$WORK/img.raw"
cmp "$MNT/db/disks/vda" "$WORK/img.raw" || fail "disks/vda is not the image"

step "while disks/vda is open, a reference point is refused with EBUSY (the image is locked)"
exec 3<"$MNT/db/disks/vda"
export _D=$RPS/rpy
assert_fails_with EBUSY 'mkdir "$_D"'
JOB=$(ls -v "$MNT/jobs" | tail -n 1)
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "being read" "the reason"
exec 3<&-
[[ ! -e $RPS/rpy ]] || fail "rpy exists after a refused creation"
has_bitmap "$IMG" "$(tracking rp2)" || fail "the refused creation touched the image"
assert_checkpoints rp1 rp2

step "rp2 in full and as a differential from rp1 (made while running)"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2"
equal_to_image "$E2"
E2D=$(new_dir e2d)
export_rp "$RPS/rp2" "$E2D" BaseReferencePoint=rp1
assert_eq "$(realpath "$(backing_of "$E2D/db/disks/vda.qcow2")")" \
  "$E1/db/disks/vda.qcow2" "rp2's differential's backing"
equal_to_image "$E2D"

step "virsh start succeeds: rpfs holds nothing; rp3 by a backup job based on rp2"
lv_start "$DOM"
vm_wait_seq "$DOM" 50 120
wait_until 30 "a reference point made after the domain started" \
  try_mkdir "$RPS/rp3"
assert_file_eq "$RPS/rp2/HasAssociatedData" false
assert_file_eq "$RPS/rp3/HasAssociatedData" true
E3=$(new_dir e3)
E3F=$(new_dir e3f)
export_rp "$RPS/rp3" "$E3" BaseReferencePoint=rp2
export_rp "$RPS/rp3" "$E3F" KeepAssociatedData=false
assert_eq "$(realpath "$(backing_of "$E3/db/disks/vda.qcow2")")" \
  "$E2D/db/disks/vda.qcow2" "rp3's differential's backing (rp2's last export)"
raw_of "$E3/db/disks/vda.qcow2" "$WORK/rp3.raw"
raw_of "$E3F/db/disks/vda.qcow2" "$WORK/rp3f.raw"
cmp "$WORK/rp3.raw" "$WORK/rp3f.raw" ||
  fail "rp3's differential from rp2 and its full export differ"
assert_checkpoints rp1 rp2 rp3

step "shut off again, remounted: rp4 on the images, a differential from rp3"
lv_virsh destroy "$DOM" >/dev/null
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
mkdir "$RPS/rp4"
E4=$(new_dir e4)
export_rp "$RPS/rp4" "$E4" BaseReferencePoint=rp3
equal_to_image "$E4"
assert_checkpoints rp1 rp2 rp3 rp4
CP4=$(tracking rp4)
umount_rpfs "$MNT"

step "libvirt forgets rp4's checkpoint; imported into a new store while shut off, it is redefined"
lv_virsh checkpoint-delete "$DOM" "$CP4" --metadata >/dev/null
! lv_checkpoints "$DOM" | grep -qx "$CP4" || fail "libvirt still lists $CP4"
lv_store
echo "libvirt-domain = $DOM" >"$STORE/systems/db.conf"
mount_rpfs "$STORE" "$MNT"
call_method "$MNT/db/ImportReferencePointMetadata" "$E4/db/config"$'\n'"$E4/db/referencepoint"$'\n'
assert_eq "$RV" 0 "ImportReferencePointMetadata ($DESC)"
lv_checkpoints "$DOM" | grep -qx "$CP4" || fail "libvirt did not get $CP4 back"
grep -q "checkpoint $CP4 redefined" "${_MNT_LOG[$MNT]}" ||
  fail "rpfs did not say it redefined $CP4"
umount_rpfs "$MNT"
pass
