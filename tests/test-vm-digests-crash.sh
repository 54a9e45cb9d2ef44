#!/bin/bash
# Digest tables with a running guest (qmp = SOCKET): its QEMU is killed
# (kill -9), then, separately, QEMU and rpfs together.  Each time the
# reference points from before the crash read `ChangeTracking: digests: ...`
# and a new one exports from them by comparing digests: exact (cmp with
# the bitmap-based chain of the same content made before the crash), no
# larger than 1.2 times it, and blocks the guest overwrote with the same
# data are left out.  VerifyExport passes on the result.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "$0")/vm.sh"
requires_root
vm_kit
export VM_CMDLINE=rpfs.writer=0  # the test writes, through the VM's device

new_store
add_system vm1 sda:64M sdb:16M
SDA=$(img_of vm1 sda)
SDB=$(img_of vm1 sdb)
cat >>"$STORE/systems/vm1.conf" <<EOF
qmp = $WORK/vm1.qmp
node sda = vm1-sda
node sdb = vm1-sdb
EOF
export MNT=$TMPROOT/mnt
export RPS=$MNT/vm1/referencepoints

vm_start vm1 "$SDA" "$SDB"
mount_rpfs "$STORE" "$MNT"

size_of() { stat -c %s "$1/vm1/disks/sda.qcow2"; }

# flush: the guest's writes reach the images (qcow2 keeps new cluster
# mappings in QEMU's memory until a flush; a kill -9 loses what is not).
flush() {
  local n
  for n in vm1-sda vm1-sdb; do
    vm_qmp "$VM_QMP2" "{\"execute\": \"human-monitor-command\",
      \"arguments\": {\"command-line\": \"qemu-io drive-$n flush\"}}" >/dev/null ||
      fail "flush of $n failed"
  done
}

# same_disks A B: the exports in A and B restore to the same disks.
same_disks() {
  local d
  for d in sda sdb; do
    raw_of "$1/vm1/disks/$d.qcow2" "$WORK/a.raw"
    raw_of "$2/vm1/disks/$d.qcow2" "$WORK/b.raw"
    cmp "$WORK/a.raw" "$WORK/b.raw" || fail "$d: $1 and $2 differ"
  done
}

# after_crash OLD NEW CONTROL: NEW (made after the crash, nothing written
# since the control's reference point) exported from OLD by digests equals
# CONTROL (the bitmap-based export of the same change), is no larger than
# 1.2 times it, and holds only the ranges in WORK/allowed.  Sets E.
after_crash() {
  local old=$1 new=$2 control=$3
  assert_match "$(cat "$RPS/$old/ChangeTracking")" "^digests: bitmap lost at " "ChangeTracking of $old"
  assert_file_eq "$RPS/$new/ChangeTracking" intact
  E=$(new_dir "$new-from-$old")
  export_rp "$RPS/$new" "$E" "BaseReferencePoint=$old"
  grep -qx "DifferentialBy = digests" "$E/vm1/referencepoint" || fail "$new from $old: not by digests"
  same_disks "$E" "$control"
  local full
  full=$(new_dir "$new-full")
  export_rp "$RPS/$new" "$full"
  same_disks "$E" "$full"
  local a b
  a=$(size_of "$E")
  b=$(size_of "$control")
  echo "   sda image: $a bytes by digests, $b by bitmap"
  ((a * 10 <= b * 12)) || fail "$new from $old: $a bytes, more than 1.2 x $b"
  assert_ranges_within "$new from $old" <(alloc_ranges "$E/vm1/disks/sda.qcow2") "$WORK/allowed"
}

step "rp1 (full export); the guest writes new data, the same data, zeros; rp2 (by bitmap)"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1"
vm_write vm1-sda 0xa1 8M 1M
vm_write vm1-sda 0x11 0 128K # the data that is there already
vm_write vm1-sda 0x00 4M 128K
vm_write vm1-sdb 0xa2 64K 64K
flush
mkdir "$RPS/rp2"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
ranges 8M:1M 4M:128K >"$WORK/allowed"

step "kill -9 the VM's QEMU; the VM is back; rp3 from rp1 by digests"
vm_kill vm1
vm_start vm1 "$SDA" "$SDB"
mkdir "$RPS/rp3"
after_crash rp1 rp3 "$E2"

step "rp4 after new writes (by bitmap from rp3); then kill -9 QEMU and rpfs together"
vm_write vm1-sda 0xb1 16M 1M
vm_write vm1-sda 0xa1 8M 64K # the same again
flush
mkdir "$RPS/rp4"
E4=$(new_dir e4)
export_rp "$RPS/rp4" "$E4" "BaseReferencePoint=rp3"
grep -qx "DifferentialBy = bitmaps" "$E4/vm1/referencepoint" || fail "rp4 from rp3: not by bitmap"
crash_rpfs "$MNT" "${_VM_PID[vm1]}"
vm_kill vm1
vm_start vm1 "$SDA" "$SDB"
mount_rpfs "$STORE" "$MNT"
mkdir "$RPS/rp5"
ranges 16M:1M >"$WORK/allowed"
after_crash rp3 rp5 "$E4"

step "the older base rp1 still serves; VerifyExport passes"
E6=$(new_dir rp5-from-rp1)
export_rp "$RPS/rp5" "$E6" "BaseReferencePoint=rp1"
same_disks "$E6" "$E4"
call_method "$RPS/rp5/VerifyExport" "$E6"$'\n'
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"

umount_rpfs "$MNT"
pass
