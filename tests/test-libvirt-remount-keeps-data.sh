#!/bin/bash
# A running libvirt domain's reference point keeps its point-in-time data
# across a remount and across a crash of rpfs: its data is libvirt's backup
# job, which outlives rpfs, and the next mount takes it over.
#   - rp1 is made while the domain runs and exported in full;
#   - rpfs is unmounted; the guest writes over data rp1 holds; mounted
#     again, rp1 still has its data (the log says the job was taken over)
#     and exports the same disk as before the write;
#   - rpfs is killed (kill -9); the guest writes again; mounted again, the
#     same holds; removing rp1's data then ends libvirt's backup job.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_CMDLINE=rpfs.writer=0  # the test writes, through the VM's device
DOM=rpfs-lvkeep-$$

lv_store
IMG=$IMAGES/a.qcow2
qemu-img create -q -f qcow2 "$IMG" 64M
qemu-io -f qcow2 -c "write -P 0x11 0 16M" "$IMG" >/dev/null
echo "libvirt-domain = $DOM" >"$STORE/systems/db.conf"
MNT=$TMPROOT/mnt
RPS=$MNT/db/referencepoints
lv_define "$DOM" "$IMG"
mount_rpfs "$STORE" "$MNT"
# same_as_first EXPORTDIR: it restores the disk of rp1's first export.
same_as_first() {
  raw_of "$1/db/disks/vda.qcow2" "$WORK/again.raw"
  cmp "$WORK/first.raw" "$WORK/again.raw" || fail "$1 is not rp1's point in time"
}
taken_over() {
  assert_file_eq "$RPS/rp1/HasAssociatedData" true
  grep -q "db/rp1: point-in-time data kept: the backup job an earlier rpfs began still runs" \
    "${_MNT_LOG[$MNT]}" || fail "rpfs's log does not say it took the job over"
}

step "rp1 while the domain runs, exported in full"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1"
raw_of "$E1/db/disks/vda.qcow2" "$WORK/first.raw"

step "unmounted; the guest writes; mounted again: rp1 keeps its point in time"
umount_rpfs "$MNT"
lv_guest_write "$DOM" 0xa1 0 1M
mount_rpfs "$STORE" "$MNT"
taken_over
E2=$(new_dir e2)
export_rp "$RPS/rp1" "$E2"
same_as_first "$E2"

step "rpfs killed; the guest writes; mounted again: the same"
crash_rpfs "$MNT"
lv_guest_write "$DOM" 0xa2 4M 1M
mount_rpfs "$STORE" "$MNT"
taken_over
E3=$(new_dir e3)
export_rp "$RPS/rp1" "$E3"
same_as_first "$E3"

step "RemoveAssociatedData ends libvirt's backup job"
backup_job() { lv_virsh domjobinfo "$DOM" | grep -q 'Operation: *Backup'; }
backup_job || fail "libvirt runs no backup job for rp1"
call_method "$RPS/rp1/RemoveAssociatedData" $'1\n'
assert_file_eq "$RPS/rp1/HasAssociatedData" false
wait_until 30 "libvirt's backup job to end" eval '! backup_job'
umount_rpfs "$MNT"
pass
