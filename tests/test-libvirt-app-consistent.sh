#!/bin/bash
# ConsistencyLevel=1 on a libvirt domain: rpfs freezes the guest's file
# systems through libvirt (virDomainFSFreeze, the guest agent channel of the
# domain XML) around the checkpoint and backup job, and thaws it after.  The
# test guest's freeze hook quiesces its writer, so the export holds exactly
# the quiesced state (header CLEAN).  When the guest's hook refuses, the
# creation fails with 32770, nothing is made and the guest is thawed; with
# consistency-fallback = crash the same request makes a crash-consistent
# reference point that says why.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
lv_kit
export VM_SLOTS=${VM_SLOTS:-256} VM_AGENT=1
DOM=rpfs-lvac-$$

lv_store
qemu-img create -q -f qcow2 "$IMAGES/a.qcow2" 64M
qemu-img create -q -f qcow2 "$IMAGES/b.qcow2" 64M
write_conf() {
  printf 'libvirt-domain = %s\n%s\n' "$DOM" "$*" >"$STORE/systems/web.conf"
}
write_conf
MNT=$TMPROOT/mnt
RPS=$MNT/web/referencepoints
CREATE=$MNT/web/CreateReferencePoint
CONSOLE=$WORK/$DOM.console.log
quiesced() { grep -ao 'rpfs-writer: quiesced seq=[0-9]*' "$CONSOLE" | sed 's/.*=//'; }
fsfreeze_status() {
  lv_virsh qemu-agent-command "$DOM" '{"execute":"guest-fsfreeze-status"}'
}

lv_define "$DOM" "$IMAGES/a.qcow2" "$IMAGES/b.qcow2"
grep -aq 'rpfs-guest: agent up' "$CONSOLE" || fail "the guest agent did not start"
vm_wait_seq "$DOM" 100 120
mount_rpfs "$STORE" "$MNT"

step "ConsistencyLevel=1: the guest is frozen around the checkpoint"
call_method "$CREATE" $'rp1\nConsistencyLevel=1\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_file_eq "$RPS/rp1/ConsistencyLevel" 1
q=$(quiesced)
[[ $(wc -l <<<"$q") == 1 && -n $q ]] || fail "the writer quiesced ${q:-never}, expected once"
grep -aq 'rpfs-writer: resumed' "$CONSOLE" || fail "the guest was not thawed"
assert_match "$(fsfreeze_status)" '"thawed"' "guest freeze status"

step "the export is the quiesced state: header CLEAN, cut at seq $q"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" KeepAssociatedData=false
raw_of "$E1/web/disks/vda.qcow2" "$WORK/a.raw"
raw_of "$E1/web/disks/vdb.qcow2" "$WORK/b.raw"
out=$("$VM_CHECK" --expect-clean "$VM_SLOTS" "$WORK/a.raw" "$WORK/b.raw") ||
  fail "rp1 is not application consistent: $out"
assert_eq "$(head -n 1 <<<"$out")" "cut seq=$q header=CLEAN last_seq=$q" "check-pattern"

step "the guest's hook refuses (domain redefined and started again): 32770, nothing made, thawed"
lv_virsh destroy "$DOM" >/dev/null
LV_UUID=$(lv_virsh domuuid "$DOM") VM_CMDLINE=rpfs.hookfail=1 lv_xml "$DOM" "$IMAGES/a.qcow2" "$IMAGES/b.qcow2" >"$WORK/$DOM.xml"
lv_virsh define "$WORK/$DOM.xml" >/dev/null
lv_start "$DOM"
vm_wait_seq "$DOM" 100 120
call_method "$CREATE" $'rp2\nConsistencyLevel=1\n'
assert_eq "$RV" 32770 "ReturnValue ($DESC)"
assert_match "$DESC" 'could not be frozen' "description"
assert_eq "$(listing "$RPS")" "rp1" "reference points"
assert_eq "$(lv_checkpoints "$DOM")" "$(sort -u "$RPS/rp1/ResilientChangeTrackingIdentifiers")" "checkpoints"
assert_match "$(fsfreeze_status)" '"thawed"' "guest freeze status"
s=$(vm_seq "$DOM")
vm_wait_seq "$DOM" $((s + 10)) 60

step "with consistency-fallback = crash: a crash-consistent rp2 that records 2 and says why"
umount_rpfs "$MNT"
write_conf "consistency-fallback = crash"
mount_rpfs "$STORE" "$MNT"
call_method "$CREATE" $'rp2\nConsistencyLevel=1\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_match "$DESC" '^crash consistent.*could not be frozen' "description"
assert_file_eq "$RPS/rp2/ConsistencyLevel" 2

umount_rpfs "$MNT"
pass
