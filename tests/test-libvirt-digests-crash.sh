#!/bin/bash
# Digest tables on a libvirt domain: its QEMU is killed (kill -9), which
# leaves the checkpoints' bitmaps in-use on the image.
#   - Started again at once: the next log based reference point's backup
#     job cannot be incremental from the broken checkpoint; it begins as a
#     full one, the base reads `ChangeTracking: digests: ...`, and the new
#     reference point exports from it by digests, equal to its own full
#     export, holding only the blocks that changed (new data and zeros, not
#     the blocks rewritten with the same data).
#   - Killed again and left shut off: the attach to the shut-off domain
#     finds rp2's bitmap missing from the image (QEMU writes a bitmap made
#     while it runs only when it closes the image); a reference point made
#     there exports from rp2 by digests, equal to the image.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_CMDLINE=rpfs.writer=0  # the test writes, through the VM's device
DOM=rpfs-lvdig-$$

lv_store
IMG=$IMAGES/a.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
qemu-io -f qcow2 -c "write -P 0x11 0 16M" "$IMG" >/dev/null
cat >"$STORE/systems/db.conf" <<EOC
libvirt-domain = $DOM
EOC
MNT=$TMPROOT/mnt
RPS=$MNT/db/referencepoints

lv_define "$DOM" "$IMG"
mount_rpfs "$STORE" "$MNT"
# write BYTE OFFSET LENGTH: through the guest's device (so libvirt's
# bitmaps see it), then flushed (a kill -9 keeps what reached the image).
write() { lv_guest_write "$DOM" "$@"; }
kill_qemu() {
  local pid
  pid=$(cat "/var/run/libvirt/qemu/$DOM.pid") || fail "no pid file of $DOM's QEMU"
  kill -9 "$pid"
  wait_until 30 "libvirt to see $DOM shut off" \
    bash -c "[[ \$(virsh -c $LV_URI domstate $DOM) == 'shut off' ]]"
}
by_digests() {
  grep -qx "DifferentialBy = digests" "$1/db/referencepoint" ||
    fail "$1: not a differential by digests: $(grep DifferentialBy "$1/db/referencepoint")"
}
try_mkdir() { mkdir "$1" 2>/dev/null; }

step "rp1, exported in full (its digest table); new data, the same data, zeros"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" KeepAssociatedData=false
assert_file_eq "$RPS/rp1/ChangeTracking" intact
write 0xa1 8M 1M
write 0x11 0 128K
write 0x00 4M 128K

step "kill -9 QEMU, virsh start: rp2's job begins in full; rp1 serves by digests"
kill_qemu
lv_start "$DOM"
wait_until 30 "a reference point of the started domain" try_mkdir "$RPS/rp2"
assert_file_eq "$RPS/rp2/HasAssociatedData" true
assert_match "$(cat "$RPS/rp1/ChangeTracking")" "^digests: bitmap lost at .*libvirt" \
  "ChangeTracking of rp1"
E2=$(new_dir e2)
E2F=$(new_dir e2f)
export_rp "$RPS/rp2" "$E2" BaseReferencePoint=rp1
by_digests "$E2"
export_rp "$RPS/rp2" "$E2F" KeepAssociatedData=false
raw_of "$E2/db/disks/vda.qcow2" "$WORK/chain.raw"
raw_of "$E2F/db/disks/vda.qcow2" "$WORK/full.raw"
cmp "$WORK/chain.raw" "$WORK/full.raw" || fail "rp2 by digests differs from its full export"
ranges 8M:1M 4M:128K >"$WORK/allowed"
assert_ranges_within "rp2 from rp1" <(alloc_ranges "$E2/db/disks/vda.qcow2") "$WORK/allowed"

step "new data; kill -9 QEMU and leave the domain off: rp3 on the image, from rp2 by digests"
write 0xb1 16M 1M
kill_qemu
wait_until 30 "a reference point of the shut-off domain" try_mkdir "$RPS/rp3"
assert_match "$(cat "$RPS/rp2/ChangeTracking")" "^digests: bitmap lost at .*(inconsistent|missing)" \
  "ChangeTracking of rp2"
E3=$(new_dir e3)
export_rp "$RPS/rp3" "$E3" BaseReferencePoint=rp2
by_digests "$E3"
raw_of "$E3/db/disks/vda.qcow2" "$WORK/chain.raw"
raw_of "$IMG" "$WORK/img.raw"
cmp "$WORK/chain.raw" "$WORK/img.raw" || fail "rp3 by digests is not the image"
ranges 16M:1M >"$WORK/allowed"
assert_ranges_within "rp3 from rp2" <(alloc_ranges "$E3/db/disks/vda.qcow2") "$WORK/allowed"

umount_rpfs "$MNT"
pass
