#!/bin/bash
# The VM goes away.  Killed during an export: the job ends in Exception (10)
# with ErrorCode 32777, nothing is left in the export directory, the mount
# stays up and answers 32777 until the VM is back; then the reference point
# whose bitmap the kill lost reads "lost" and is refused as a base (32775).
# Quit cleanly: QEMU writes the bitmaps, the reference point stays intact,
# and a differential export across the VM's restart holds exactly the
# writes made before and after it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "$0")/vm.sh"
requires_root
vm_kit
export VM_CMDLINE=rpfs.writer=0  # the test writes, through the VM's device

new_store
add_system vm1 sda:1G sdb:16M
SDA=$(img_of vm1 sda)
SDB=$(img_of vm1 sdb)
fill_busy "$SDA"
cat >>"$STORE/systems/vm1.conf" <<EOF
qmp = $WORK/vm1.qmp
node sda = vm1-sda
node sdb = vm1-sdb
EOF
export MNT=$TMPROOT/mnt
export RPS=$MNT/vm1/referencepoints

vm_start vm1 "$SDA" "$SDB"
mount_rpfs "$STORE" "$MNT"

step "kill -9 the VM's QEMU while rp1 is being exported"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
start_export "$RPS/rp1" "$E1"
wait_running "$JOB" "$E1"
vm_kill vm1

step "the job ends in Exception (10), ErrorCode 32777, and says why"
wait_job_done "$MNT/jobs/$JOB" 60
echo "   ErrorDescription: $(cat "$MNT/jobs/$JOB/ErrorDescription")"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_file_eq "$MNT/jobs/$JOB/ErrorCode" 32777
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" 'the VM of vm1' "ErrorDescription"
wait_until 10 "$E1 to be emptied" eval '[[ -z $(ls -A "$E1") ]]'

step "the mount stays up; without the VM, mkdir answers ENODEV (32777)"
rpfs_alive "$MNT" || fail "rpfs exited with the VM"
assert_fails_with ENODEV 'mkdir "$RPS/rp2"'
read_result "$MNT/vm1/CreateReferencePoint"
assert_eq "$RV" 32777 "ReturnValue of the mkdir"

step "the VM is back: rp1's bitmap died with it (lost, no data), rp2 can be made"
vm_start vm1 "$SDA" "$SDB"
mkdir "$RPS/rp2"
assert_match "$(cat "$RPS/rp1/ChangeTracking")" '^lost: .*sda is missing' "rp1 ChangeTracking"
assert_file_eq "$RPS/rp1/HasAssociatedData" false
assert_file_eq "$RPS/rp2/ChangeTracking" intact

step "export rp2 (full); the VM writes 0x55 at 600M, then quits cleanly"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2"
vm_write vm1-sda 0x55 600M 1M
vm_quit vm1

step "the VM is back: rp2's tracking survived the restart, its data did not"
vm_start vm1 "$SDA" "$SDB"
vm_write vm1-sda 0x66 700M 2M
mkdir "$RPS/rp3"
assert_file_eq "$RPS/rp2/ChangeTracking" intact
assert_file_eq "$RPS/rp2/HasAssociatedData" false

step "rp3 against rp2: the image holds exactly the writes before and after the restart"
E3=$(new_dir e3)
export_rp "$RPS/rp3" "$E3" "BaseReferencePoint=rp2"
raw_of "$E2/vm1/disks/sda.qcow2" "$WORK/expected.raw"
fill_file "$WORK/expected.raw" 0x55 600M 1M
fill_file "$WORK/expected.raw" 0x66 700M 2M
assert_eq "$(realpath "$(backing_of "$E3/vm1/disks/sda.qcow2")")" "$E2/vm1/disks/sda.qcow2" "backing file"
raw_of "$E3/vm1/disks/sda.qcow2" "$WORK/rp3.raw"
cmp "$WORK/rp3.raw" "$WORK/expected.raw" || fail "rp3's export chain is not the disk at rp3"
assert_ranges_within "rp3's changes" <(data_ranges "$E3/vm1/disks/sda.qcow2") \
  <(ranges 600M:1M 700M:2M)

step "rp1 (lost in the kill) is refused as a base with 32775"
method_refused EPERM 32775 "$RPS/rp3/ExportReferencePoint" \
  "$(new_dir e4)"$'\nBaseReferencePoint=rp1\n'
assert_match "$DESC" 'rp1' "description"

umount_rpfs "$MNT"
pass
