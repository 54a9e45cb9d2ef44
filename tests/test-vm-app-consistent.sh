#!/bin/bash
# ConsistencyLevel=1 on a running VM with qemu-guest-agent: rpfs freezes the
# guest (its fsfreeze hook makes the writer quiesce and mark its header
# CLEAN), runs the transaction, thaws.  The export holds exactly the
# quiesced state (check-pattern --expect-clean, cut = the seq the writer
# quiesced at), the reference point records 1, and the guest writes on.
# A freeze that fails (the hook refuses) gives 32770 and leaves the guest
# thawed; with consistency-fallback = crash the same request makes a
# crash-consistent point that records 2 and says why; an agent that does
# not answer is given up after guest-agent-timeout.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "$0")/vm.sh"
requires_root
vm_kit
export VM_SLOTS=512 VM_AGENT=1

new_store
for d in sda sdb; do
  qemu-img create -q -f qcow2 "$IMAGES/vm1-$d.qcow2" 64M
done
CONF=$STORE/systems/vm1.conf
write_conf() {
  cat >"$CONF" <<EOF
qmp = $WORK/vm1.qmp
guest-agent = ${AGENT_SOCK:-$WORK/vm1.qga}
guest-agent-timeout = 3
disk sda = $IMAGES/vm1-sda.qcow2
node sda = vm1-sda
disk sdb = $IMAGES/vm1-sdb.qcow2
node sdb = vm1-sdb
$*
EOF
}
write_conf
MNT=$TMPROOT/mnt
RPS=$MNT/vm1/referencepoints
CREATE=$MNT/vm1/CreateReferencePoint

boot() {
  vm_start vm1 "$IMAGES/vm1-sda.qcow2" "$IMAGES/vm1-sdb.qcow2"
  vm_wait_seq vm1 100 120
}

# quiesced: the seqs the writer reported quiescing at, one a line.
quiesced() { grep -ao 'rpfs-writer: quiesced seq=[0-9]*' "$VM_CONSOLE" | sed 's/.*=//'; }

boot
mount_rpfs "$STORE" "$MNT"

step "ConsistencyLevel=1: the guest is frozen for the transaction"
call_method "$CREATE" $'rp1\nConsistencyLevel=1\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_file_eq "$RPS/rp1/ConsistencyLevel" 1
q=$(quiesced)
[[ $(wc -l <<<"$q") == 1 && -n $q ]] || fail "the writer quiesced ${q:-never}, expected once"
grep -aq 'rpfs-writer: resumed' "$VM_CONSOLE" || fail "the guest was not thawed"
assert_eq "$(vm_qga "$VM_QGA" '{"execute": "guest-fsfreeze-status"}')" \
  '{"return": "thawed"}' "guest freeze status"

step "the export is the quiesced state: header CLEAN, cut at seq $q"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1"
raw_of "$E1/vm1/disks/sda.qcow2" "$WORK/sda.raw"
raw_of "$E1/vm1/disks/sdb.qcow2" "$WORK/sdb.raw"
out=$("$VM_CHECK" --expect-clean "$VM_SLOTS" "$WORK/sda.raw" "$WORK/sdb.raw") ||
  fail "rp1 is not application consistent: $out"
assert_eq "$(head -n 1 <<<"$out")" "cut seq=$q header=CLEAN last_seq=$q" "check-pattern"
grep -qx 'ConsistencyLevel = 1' "$E1/vm1/referencepoint" || fail "referencepoint does not record 1"

step "a crash-consistent mkdir meanwhile: consistent too, but the header is DIRTY"
h=$(vm_seq vm1)
vm_wait_seq vm1 $((h + 1)) 60
mkdir "$RPS/rp2"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2"
raw_of "$E2/vm1/disks/sda.qcow2" "$WORK/sda.raw"
raw_of "$E2/vm1/disks/sdb.qcow2" "$WORK/sdb.raw"
out=$("$VM_CHECK" "$VM_SLOTS" "$WORK/sda.raw" "$WORK/sdb.raw") || fail "rp2: $out"
assert_match "$out" 'header=DIRTY' "rp2 (not frozen)"
assert_file_eq "$RPS/rp2/ConsistencyLevel" 2

step "the freeze fails (the guest's hook refuses): 32770, nothing made, guest thawed"
umount_rpfs "$MNT"
vm_quit vm1
VM_CMDLINE=rpfs.hookfail=1 boot
mount_rpfs "$STORE" "$MNT"
call_method "$CREATE" $'rp3\nConsistencyLevel=1\n'
assert_eq "$RV" 32770 "ReturnValue ($DESC)"
assert_match "$DESC" 'could not be frozen' "description"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_eq "$(listing "$RPS")" "rp1 rp2" "reference points"
assert_eq "$(vm_qga "$VM_QGA" '{"execute": "guest-fsfreeze-status"}')" \
  '{"return": "thawed"}' "guest freeze status"
s=$(vm_seq vm1)
vm_wait_seq vm1 $((s + 10)) 60

step "with consistency-fallback = crash: a crash-consistent rp3 that records 2 and says why"
umount_rpfs "$MNT"
write_conf "consistency-fallback = crash"
mount_rpfs "$STORE" "$MNT"
call_method "$CREATE" $'rp3\nConsistencyLevel=1\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_match "$DESC" '^crash consistent.*could not be frozen' "description"
assert_file_eq "$RPS/rp3/ConsistencyLevel" 2
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" 'consistency-fallback' "ErrorDescription"

step "an agent that does not answer is given up after guest-agent-timeout (3 s)"
umount_rpfs "$MNT"
AGENT_SOCK=$WORK/mute.qga
socat "UNIX-LISTEN:$AGENT_SOCK,fork" EXEC:"sleep 30" &
cleanup_add "kill $! 2>/dev/null"
wait_until 5 "the mute agent socket" test -S "$AGENT_SOCK"
write_conf
mount_rpfs "$STORE" "$MNT"
t0=$SECONDS
call_method "$CREATE" $'rp4\nConsistencyLevel=1\n'
assert_eq "$RV" 32770 "ReturnValue ($DESC)"
assert_match "$DESC" 'not answering' "description"
((SECONDS - t0 < 15)) || fail "the request took $((SECONDS - t0)) s"

umount_rpfs "$MNT"
pass
