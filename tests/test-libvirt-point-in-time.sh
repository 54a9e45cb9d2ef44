#!/bin/bash
# A libvirt domain (TCG, the test guest writing its pattern to two qcow2
# disks) is an rpfs system through "libvirt-domain = NAME": its disks come
# from the domain XML, reference points are libvirt checkpoints made by
# pull-mode backup jobs, and exports read the job's NBD export.  While the
# guest writes, three reference points are made, each exported (full, then
# differential from the one before) and its data dropped; check-pattern
# proves every export is one instant of both disks, in creation order, and
# the differential chain restores the same disks as a full export.  Then
# what libvirt's one backup job per domain does not allow is refused with
# 32775 and a reason: a second log based reference point while one holds
# data, and a differential from a base other than the one just before.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_SLOTS=${VM_SLOTS:-512}
WRAP=$((2 * VM_SLOTS))
DOM=rpfs-lvpit-$$

lv_store
qemu-img create -q -f qcow2 "$IMAGES/a.qcow2" 64M
qemu-img create -q -f qcow2 "$IMAGES/b.qcow2" 64M
cat >"$STORE/systems/web.conf" <<EOC
libvirt-domain = $DOM
EOC
MNT=$TMPROOT/mnt
RPS=$MNT/web/referencepoints

lv_define "$DOM" "$IMAGES/a.qcow2" "$IMAGES/b.qcow2"
vm_wait_seq "$DOM" 100 120
mount_rpfs "$STORE" "$MNT"

step "the disks are the domain's targets"
assert_eq "$(ls "$MNT/web/disks" | tr '\n' ' ')" "vda vdb " "disks/"

declare -A LO HI CUT
make_rp() {
  local h
  LO[$1]=$(vm_seq "$DOM")
  mkdir "$RPS/$1"
  h=$(vm_seq "$DOM")
  vm_wait_seq "$DOM" $((h + 1)) 60
  HI[$1]=$(vm_seq "$DOM")
  assert_file_eq "$RPS/$1/HasAssociatedData" true
}
cut_of() {
  local name=$1 dir=$2 out
  raw_of "$dir/web/disks/vda.qcow2" "$WORK/$name.a.raw"
  raw_of "$dir/web/disks/vdb.qcow2" "$WORK/$name.b.raw"
  out=$("$VM_CHECK" "$VM_SLOTS" "$WORK/$name.a.raw" "$WORK/$name.b.raw") ||
    fail "export of $name is not one instant of the guest's writes: $out"
  echo "   $name: $out"
  CUT[$name]=$(sed -n 's/^cut seq=\([0-9]*\) .*/\1/p' <<<"$out")
  ((CUT[$name] >= LO[$name] && CUT[$name] <= HI[$name])) ||
    fail "$name's cut (seq ${CUT[$name]}) is outside the writes around its mkdir (${LO[$name]}..${HI[$name]})"
}
overwritten() { vm_wait_seq "$DOM" $((HI[$1] + WRAP + 2)) 300; }

E1=$(new_dir e1)
E2=$(new_dir e2)
E3=$(new_dir e3)
E4=$(new_dir e4)

step "rp1, exported in full after the guest rewrote every slot; its data dropped"
make_rp rp1
overwritten rp1
export_rp "$RPS/rp1" "$E1" KeepAssociatedData=false
assert_file_eq "$RPS/rp1/HasAssociatedData" false

step "rp2, exported as a differential from rp1"
make_rp rp2
overwritten rp2
export_rp "$RPS/rp2" "$E2" BaseReferencePoint=rp1 KeepAssociatedData=false

step "rp3, a differential from rp2 and a full export"
make_rp rp3
overwritten rp3
export_rp "$RPS/rp3" "$E3" BaseReferencePoint=rp2
export_rp "$RPS/rp3" "$E4"

step "virsh checkpoint-list shows exactly the three reference points"
assert_eq "$(lv_checkpoints "$DOM" | tr '\n' ' ')" \
  "$(cat "$RPS"/rp{1,2,3}/ResilientChangeTrackingIdentifiers | sort -u | tr '\n' ' ')" "checkpoints"

step "each export is one instant of both disks, in creation order"
cut_of rp1 "$E1"
cut_of rp2 "$E2"
cut_of rp3 "$E3"
((CUT[rp1] < CUT[rp2] && CUT[rp2] < CUT[rp3])) ||
  fail "cuts out of order: ${CUT[rp1]} ${CUT[rp2]} ${CUT[rp3]}"
assert_eq "$(realpath "$(backing_of "$E3/web/disks/vdb.qcow2")")" "$E2/web/disks/vdb.qcow2" "rp3's backing"

step "the differential chain of rp3 and its full export hold the same disks"
raw_of "$E4/web/disks/vda.qcow2" "$WORK/rp3full.a.raw"
raw_of "$E4/web/disks/vdb.qcow2" "$WORK/rp3full.b.raw"
cmp "$WORK/rp3.a.raw" "$WORK/rp3full.a.raw" || fail "vda: chain and full export differ"
cmp "$WORK/rp3.b.raw" "$WORK/rp3full.b.raw" || fail "vdb: chain and full export differ"

step "one backup job per domain: a second log based reference point is refused while rp3 holds data"
export _D=$RPS/rp4
assert_fails_with EPERM 'mkdir "$_D"'
JOB=$(ls -v "$MNT/jobs" | tail -n 1)
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 32775
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "one backup job per domain"
[[ ! -e $RPS/rp4 ]] || fail "rp4 exists after a refused creation"
step "an RCT based one is made meanwhile"
call_method "$MNT/web/CreateReferencePoint" $'rp4\nReferencePointType=2\n'
assert_eq "$RV" 0 "CreateReferencePoint rp4 type 2 ($DESC)"

step "a differential of rp3 from rp1 (not the one just before) ends with 32775 and says why"
E5=$(new_dir e5)
start_export "$RPS/rp3" "$E5" BaseReferencePoint=rp1
wait_job_done "$MNT/jobs/$JOB"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_file_eq "$MNT/jobs/$JOB/ErrorCode" 32775
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "holds the changes since"
assert_empty_dir "$E5"

step "the mount's running disks are not readable (libvirt has no export of them)"
if head -c 4096 "$MNT/web/disks/vda" >/dev/null 2>&1; then
  fail "reading the running disk vda succeeded"
fi

umount_rpfs "$MNT"
pass
