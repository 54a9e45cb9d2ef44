#!/bin/bash
# `virsh checkpoint-list` shows exactly rpfs's reference points of a libvirt
# domain after each create and destroy, including a destroy in the middle
# of the chain and of the oldest; the tracking that is left stays exact (a
# differential made after those destroys restores the same disk as a full
# export, and check-pattern finds one instant of the guest's writes in it).
# ImportReferencePointMetadata into a new store re-registers a reference
# point whose checkpoint libvirt forgot (its metadata deleted, the bitmap
# still on the disk): libvirt redefines it, validated, and it serves as the
# base of an exact differential; when the bitmap is gone too, the import
# is refused with 32775 and the reason.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_SLOTS=${VM_SLOTS:-256}
DOM=rpfs-lvcp-$$

lv_store
qemu-img create -q -f qcow2 "$IMAGES/a.qcow2" 64M
cat >"$STORE/systems/app.conf" <<EOC
libvirt-domain = $DOM
disk vda = $IMAGES/a.qcow2
EOC
MNT=$TMPROOT/mnt
RPS=$MNT/app/referencepoints
lv_define "$DOM" "$IMAGES/a.qcow2"
vm_wait_seq "$DOM" 100 120
mount_rpfs "$STORE" "$MNT"

# same_as_rps: the domain's checkpoints are exactly the reference points'.
same_as_rps() {
  local want="" rp
  for rp in "$RPS"/*; do
    [[ -e $rp ]] || continue
    want+="$(cat "$rp/ResilientChangeTrackingIdentifiers")"$'\n'
  done
  assert_eq "$(lv_checkpoints "$DOM")" "$(sed '/^$/d' <<<"$want" | sort -u)" "virsh checkpoint-list $*"
  echo "   $(lv_checkpoints "$DOM" | wc -l) checkpoint(s) $*"
}
cut_of() {
  local out
  out=$("$VM_CHECK" "$VM_SLOTS" "$1") || fail "$1 is not one instant of the guest's writes: $out"
  echo "   $out"
}

step "rp1, rp2 (RCT based), rp3 (log based, exported in full, data dropped)"
call_method "$MNT/app/CreateReferencePoint" $'rp1\nReferencePointType=2\n'
same_as_rps after rp1
call_method "$MNT/app/CreateReferencePoint" $'rp2\nReferencePointType=2\n'
mkdir "$RPS/rp3"
same_as_rps after rp3
E3=$(new_dir e3)
export_rp "$RPS/rp3" "$E3" KeepAssociatedData=false

step "rmdir rp2 (in the middle), then rp1 (the oldest)"
rmdir "$RPS/rp2"
same_as_rps "after rmdir rp2"
rmdir "$RPS/rp1"
same_as_rps "after rmdir rp1"

step "rp4 after the guest rewrote everything: differential from rp3 = full export"
vm_wait_seq "$DOM" $(($(vm_seq "$DOM") + 2 * VM_SLOTS)) 120
mkdir "$RPS/rp4"
same_as_rps after rp4
E4=$(new_dir e4)
E5=$(new_dir e5)
export_rp "$RPS/rp4" "$E4" BaseReferencePoint=rp3
export_rp "$RPS/rp4" "$E5" KeepAssociatedData=false
raw_of "$E4/app/disks/vda.qcow2" "$WORK/rp4.chain.raw"
raw_of "$E5/app/disks/vda.qcow2" "$WORK/rp4.full.raw"
cmp "$WORK/rp4.chain.raw" "$WORK/rp4.full.raw" || fail "rp4: chain and full export differ"
cut_of "$WORK/rp4.chain.raw"
umount_rpfs "$MNT"

step "a new store; libvirt forgets rp4's checkpoint (metadata only)"
CP4=$(grep -h ResilientChangeTrackingIdentifier "$E5/app/referencepoint" | sed 's/.*= *//')
CP3=$(grep -h ResilientChangeTrackingIdentifier "$E3/app/referencepoint" | sed 's/.*= *//')
lv_virsh checkpoint-delete "$DOM" "$CP4" --metadata >/dev/null
assert_eq "$(lv_checkpoints "$DOM")" "$CP3" "checkpoints after deleting rp4's metadata"
cp "$STORE/systems/app.conf" "$WORK/app.conf"
lv_store
cp "$WORK/app.conf" "$STORE/systems/app.conf"
mount_rpfs "$STORE" "$MNT"

step "import rp4: libvirt redefines its checkpoint"
call_method "$MNT/app/ImportReferencePointMetadata" "$E5/app/config"$'\n'"$E5/app/referencepoint"$'\n'
assert_eq "$RV" 0 "ImportReferencePointMetadata ($DESC)"
assert_eq "$(lv_checkpoints "$DOM" | tr '\n' ' ')" "$(printf '%s\n' "$CP3" "$CP4" | sort | tr '\n' ' ')" "checkpoints after the import"
grep -q "checkpoint $CP4 redefined" "${_MNT_LOG[$MNT]}" || fail "rpfs did not say it redefined $CP4"

step "the imported rp4 is the base of an exact differential (rp6)"
vm_wait_seq "$DOM" $(($(vm_seq "$DOM") + 2 * VM_SLOTS)) 120
mkdir "$RPS/rp6"
E6=$(new_dir e6)
export_rp "$RPS/rp6" "$E6" BaseReferencePoint=rp4 KeepAssociatedData=false
# The imported reference point knows no export of its own: name rp4's full
# export as the backing file by hand.
qemu-img rebase -q -u -f qcow2 -b "$E5/app/disks/vda.qcow2" -F qcow2 "$E6/app/disks/vda.qcow2"
raw_of "$E6/app/disks/vda.qcow2" "$WORK/rp6.raw"
cut_of "$WORK/rp6.raw"

step "import rp3 after its bitmap is gone too: refused with 32775"
lv_virsh checkpoint-delete "$DOM" "$CP3" >/dev/null
# libvirt validates the bitmaps when it redefines the checkpoint, i.e. in
# the call itself (at close(2)), not in the checks of the write: the result
# line and the job say it.
printf '%s\n%s\n' "$E3/app/config" "$E3/app/referencepoint" >"$MNT/app/ImportReferencePointMetadata" 2>/dev/null || true
read_result "$MNT/app/ImportReferencePointMetadata"
assert_eq "$RV" 32775 "ReturnValue of the import of rp3 ($DESC)"
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 32775
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "no longer carry"
echo "   $(cat "$MNT/jobs/$JOB/ErrorDescription")"
[[ ! -e $RPS/rp3 ]] || fail "rp3 was registered"
same_as_rps "after the refused import"

umount_rpfs "$MNT"
pass
