#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run
# A system whose disks a running VM owns ("qmp = SOCKET"): rpfs attaches to
# the VM's QEMU instead of starting a storage daemon.  Checked here: a VM
# that is not running yet (32777, then attach on the next request),
# read-only current disks, point-in-time reads while the VM writes,
# ConsistencyLevel=1 without a guest agent (32770), the exported config
# (vm-definition as it was) and referencepoint (QEMU version, node names),
# an unmount that leaves the VM's fleecing in place and a mount that adopts
# it, and definitions that do not match the VM.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "$0")/vm.sh"
requires_root
vm_kit

new_store
add_system vm1 sda:32M sdb:16M
CONF=$STORE/systems/vm1.conf
SDA=$(img_of vm1 sda)
SDB=$(img_of vm1 sdb)
VMDEF=$WORK/vm1-definition.sh
echo "qemu-system-x86_64 ... # version 1" >"$VMDEF"
cat >>"$CONF" <<EOF
qmp = $WORK/vm1.qmp
node sda = vm1-sda
node sdb = dev-vm1-sdb
vm-definition = $VMDEF
EOF
raw_of "$SDA" "$WORK/sda.0.raw"
MNT=$TMPROOT/mnt
RPS=$MNT/vm1/referencepoints

step "mount while the VM is not running: vm1 is listed, methods answer 32777"
mount_rpfs "$STORE" "$MNT"
assert_eq "$(listing "$MNT")" "jobs vm1" "top level"
method_refused ENODEV 32777 "$MNT/vm1/CreateReferencePoint" $'rp0\n'
assert_match "$DESC" 'cannot connect to its QMP socket' "result line"

step "start the VM: the next mkdir attaches and makes rp1"
VM_CMDLINE=rpfs.writer=0 vm_start vm1 "$SDA" "$SDB"
mkdir "$RPS/rp1"
assert_file_eq "$RPS/rp1/HasAssociatedData" true
assert_file_eq "$RPS/rp1/ChangeTracking" intact

step "disks/ of a running VM are read-only and read what the VM has"
assert_match "$(stat -c %A "$MNT/vm1/disks/sda")" '^-r--r--r--$' "mode"
export SDA_FILE=$MNT/vm1/disks/sda
assert_fails_with EACCES 'echo x > "$SDA_FILE"'
cmp "$MNT/vm1/disks/sda" "$WORK/sda.0.raw" || fail "disks/sda differs from the image"

step "the VM writes: disks/sda changes, rp1/disks/sda keeps the point in time"
vm_write vm1-sda 0x77 0 2M
[[ $(head -c 1 "$MNT/vm1/disks/sda" | od -An -tx1 | tr -d ' ') == 77 ]] ||
  fail "disks/sda does not show the VM's write"
cmp "$RPS/rp1/disks/sda" "$WORK/sda.0.raw" || fail "rp1/disks/sda changed with the VM's write"

step "ConsistencyLevel=1 without a guest agent: 32770 at the write, nothing made"
method_refused EOPNOTSUPP 32770 "$MNT/vm1/CreateReferencePoint" \
  $'rp2\nConsistencyLevel=1\n'
assert_match "$DESC" 'names no guest agent' "result line"
assert_eq "$(listing "$RPS")" "rp1" "reference points"

step "export rp1: the image is the point in time, config the VM definition of then"
echo "qemu-system-x86_64 ... # version 2" >"$VMDEF"
E=$(new_dir e1)
echo "$E" >"$RPS/rp1/ExportReferencePoint"
wait_job_done "$RPS/rp1/job" 60
assert_file_eq "$RPS/rp1/job/JobState" 7
(cd "$E/vm1" && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS does not verify"
raw_of "$E/vm1/disks/sda.qcow2" "$WORK/sda.exp.raw"
cmp "$WORK/sda.exp.raw" "$WORK/sda.0.raw" || fail "the export of sda is not rp1's content"
assert_eq "$(cat "$E/vm1/config")" "qemu-system-x86_64 ... # version 1" "config"
rec=$E/vm1/referencepoint
grep -Eq '^QemuVersion = [0-9]+\.[0-9]+\.[0-9]+' "$rec" || fail "no QemuVersion in $rec"
grep -qx 'QemuNode = sda=vm1-sda' "$rec" || fail "no QemuNode for sda in $rec"
grep -qx 'QemuNode = sdb=vm1-sdb' "$rec" || fail "sdb's device id not resolved to its node in $rec"

step "unmount: rpfs's exports and NBD server leave the VM, rp1's fleecing stays"
umount_rpfs "$MNT"
kill -0 "$VM_PID" || fail "the VM stopped with the unmount"
assert_eq "$(vm_qmp "$VM_QMP" '{"execute": "query-block-exports"}')" \
  '{"return": []}' "exports left in the VM"
vm_qmp "$VM_QMP" '{"execute": "query-block-jobs"}' | grep -q '"device": "fj1_0"' ||
  fail "rp1's fleecing job is gone from the VM"

step "mount again: rp1's data is adopted and still the point in time"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RPS/rp1/HasAssociatedData" true
cmp "$RPS/rp1/disks/sda" "$WORK/sda.0.raw" || fail "rp1/disks/sda after the remount"
rmdir "$RPS/rp1"
umount_rpfs "$MNT"
vm_qmp "$VM_QMP" '{"execute": "query-block-jobs"}' | grep -q fj1_ &&
  fail "rmdir left rp1's fleecing job in the VM"

step "a vm-definition that is not a file: mkdir fails with EIO and says why"
good=$(cat "$CONF")
sed -i "s|^vm-definition = .*|vm-definition = $WORK|" "$CONF"
mount_rpfs "$STORE" "$MNT"
export RP9=$RPS/rp9
assert_fails_with EIO 'mkdir "$RP9"'
read_result "$MNT/vm1/CreateReferencePoint"
assert_eq "$RV" 32768 "ReturnValue"
assert_match "$DESC" 'not a regular file' "description"
assert_eq "$(listing "$RPS")" "" "reference points"
umount_rpfs "$MNT"

step "definitions that do not match the VM stop start-up, naming file and line"
sed -i 's/^node sda = .*/node sda = nope/' "$CONF"
start_fails "$STORE" "vm1.conf:2" "no block node or device 'nope'"
echo "$good" | sed 's/^node sda = .*/node sda = vm1-file0/' >"$CONF"
start_fails "$STORE" "vm1.conf:2" "is a file node"
echo "$good" | sed "s|^disk sda = .*|disk sda = $SDB|" >"$CONF"
start_fails "$STORE" "vm1.conf:2" "is the image $SDA, not $SDB"
echo "$good" >"$CONF"
pass
