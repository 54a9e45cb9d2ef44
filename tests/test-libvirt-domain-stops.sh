#!/bin/bash
# A libvirt domain that stops during an export (virsh destroy): libvirt's
# lifecycle event reaches rpfs, the export ends in Exception with 32777 and
# says the domain stopped, nothing is left in the export directory, and the
# mount stays up, serving the shut-off domain from its image
# (test-libvirt-shut-off.sh says more).  When the
# domain runs again it is picked up without a remount: the reference point
# from before lost its point-in-time data (the backup job died with QEMU)
# but its checkpoint stays, and a new reference point can be made and
# exported.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_SLOTS=${VM_SLOTS:-256}
DOM=rpfs-lvstop-$$

lv_store
qemu-img create -q -f qcow2 "$IMAGES/a.qcow2" 256M
# Data beyond the guest's pattern slots, so that an export takes a while at
# the rate below.
qemu-io -f qcow2 -c "write -P 0x5a 16M 96M" "$IMAGES/a.qcow2" >/dev/null
cat >"$STORE/systems/db.conf" <<EOC
libvirt-domain = $DOM
export-rate-limit = 16M
EOC
MNT=$TMPROOT/mnt
RPS=$MNT/db/referencepoints

lv_define "$DOM" "$IMAGES/a.qcow2"
mount_rpfs "$STORE" "$MNT"
mkdir "$RPS/rp1"
E1=$(new_dir e1)

step "virsh destroy while rp1's export runs: the job ends with 32777"
start_export "$RPS/rp1" "$E1"
EJOB=$JOB
wait_running "$EJOB" "$E1"
lv_virsh destroy "$DOM" >/dev/null
wait_job_done "$MNT/jobs/$EJOB" 60
assert_file_eq "$MNT/jobs/$EJOB/JobState" 10
assert_file_eq "$MNT/jobs/$EJOB/ErrorCode" 32777
echo "   $(cat "$MNT/jobs/$EJOB/ErrorDescription")"
assert_match "$(cat "$MNT/jobs/$EJOB/ErrorDescription")" "stopped|not running"
assert_empty_dir "$E1"
grep -q "libvirt: domain $DOM was destroyed" "${_MNT_LOG[$MNT]}" ||
  fail "rpfs's log does not tell that libvirt reported the domain destroyed"

step "the mount stays up; the shut-off domain's disk reads as its image"
mountpoint -q "$MNT" || fail "the mount went away"
assert_eq "$(ls "$RPS")" "rp1" "reference points"
raw_of "$IMAGES/a.qcow2" "$WORK/a.raw"
wait_until 30 "the shut-off domain's disk" cmp -s "$MNT/db/disks/vda" "$WORK/a.raw"

step "the domain runs again: picked up without a remount"
lv_start "$DOM"
wait_until 30 "a reference point of the started domain" mkdir "$RPS/rp2"
assert_file_eq "$RPS/rp1/HasAssociatedData" false
assert_file_eq "$RPS/rp2/HasAssociatedData" true
assert_eq "$(lv_checkpoints "$DOM" | tr '\n' ' ')" \
  "$(cat "$RPS"/rp{1,2}/ResilientChangeTrackingIdentifiers | sort -u | tr '\n' ' ')" "checkpoints"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2" BaseReferencePoint=rp1
qemu-img check -q "$E2/db/disks/vda.qcow2"

umount_rpfs "$MNT"
pass
