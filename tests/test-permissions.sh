#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c)
# Who may do what (issue 10; docs/reference.md "Who may do what"), on a
# mount with allow_other, with two unprivileged users made for the test:
# rpfs-t-op, a member (supplementary group) of rpfs-t-ops, the group the
# definition names, and rpfs-t-other, in no such group.
#   - only operators (root, owner, group) mkdir / rmdir, call methods, write
#     settings, list disks/ and open disks; the others get EACCES and leave
#     no job record;
#   - a disk gives an operator at most what its image's owner, group and
#     mode give that user;
#   - a job is cancelled only by its submitter, an operator of its system or
#     root; its ExportDirectory, ErrorDescription and the description in
#     status read empty for everyone else;
#   - ls -l (stat) shows the owners and modes;
#   - an unknown owner or group name stops start-up with file and line.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires_root
requires setpriv useradd userdel groupadd groupdel

OPS=rpfs-t-ops
OP=rpfs-t-op
OTHER=rpfs-t-other

step "create the users $OP (in $OPS) and $OTHER"
# Left over by an interrupted run: remove first.
userdel "$OP" 2>/dev/null || true
userdel "$OTHER" 2>/dev/null || true
groupdel "$OPS" 2>/dev/null || true
groupadd "$OPS" || fail "groupadd $OPS failed"
cleanup_add "groupdel $OPS 2>/dev/null"
useradd -M -U -G "$OPS" -s /usr/sbin/nologin "$OP" || fail "useradd $OP failed"
cleanup_add "userdel $OP 2>/dev/null"
useradd -M -U -s /usr/sbin/nologin "$OTHER" || fail "useradd $OTHER failed"
cleanup_add "userdel $OTHER 2>/dev/null"

# as U CMD...: run CMD as user U with U's groups (primary and supplementary).
as() {
  local u=$1
  shift
  setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"
}
# denied U 'shell command': the command, run as U, fails with EACCES.
denied() {
  local u=$1 cmd=$2 err rc=0
  err=$(as "$u" bash -c "$cmd" 2>&1 >/dev/null) || rc=$?
  ((rc != 0)) || fail "$u: expected 'Permission denied', but it succeeded: $cmd"
  [[ $err == *"Permission denied"* ]] ||
    fail "$u: expected 'Permission denied', got (status $rc): $err  [command: $cmd]"
}
# allowed U 'shell command': the command, run as U, succeeds.
allowed() {
  local u=$1 cmd=$2 err
  err=$(as "$u" bash -c "$cmd" 2>&1 >/dev/null) ||
    fail "$u: expected success, got: $err  [command: $cmd]"
}
# owner_mode PATH: "user:group mode" as ls -l shows them.
owner_mode() { stat -c '%U:%G %a' -- "$1"; }
njobs() { find "$MNT/jobs" -mindepth 1 -maxdepth 1 | wc -l; }

step "an unknown group name stops start-up with file and line"
new_store
add_system bad sda:16M
echo "group = rpfs-t-no-such-group" >>"$STORE/systems/bad.conf"
start_fails "$STORE" "systems/bad.conf:3:" "rpfs-t-no-such-group"

new_store
add_system vm1 sda:32M sdb:16M
echo "group = $OPS" >>"$STORE/systems/vm1.conf"
add_system vm2 sda:16M
echo "owner = $OTHER" >>"$STORE/systems/vm2.conf"
add_system vmbig sda:1G
echo "group = $OPS" >>"$STORE/systems/vmbig.conf"
fill_busy "$(img_of vmbig sda)"
IMG=$(img_of vm1 sda)
chmod 0644 "$IMG"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
V=$MNT/vm1
RPS=$V/referencepoints
export V RPS MNT

step "ls -l: the system's files belong to its owner and group"
assert_eq "$(owner_mode "$V")" "root:$OPS 755" "vm1/"
assert_eq "$(owner_mode "$V/ElementName")" "root:$OPS 444" "vm1/ElementName"
assert_eq "$(owner_mode "$V/CreateReferencePoint")" "root:$OPS 220" "vm1/CreateReferencePoint"
assert_eq "$(owner_mode "$RPS")" "root:$OPS 775" "vm1/referencepoints/"
assert_eq "$(owner_mode "$V/disks")" "root:$OPS 750" "vm1/disks/"
assert_eq "$(owner_mode "$MNT/vm2/CreateReferencePoint")" "$OTHER:root 220" "vm2/CreateReferencePoint"
step "... a disk shows its image's owner, group and read/write bits"
assert_eq "$(owner_mode "$V/disks/sda")" "root:root 644" "vm1/disks/sda (image 0644 root:root)"
chgrp "$OPS" "$IMG"
chmod 0640 "$IMG"
assert_eq "$(owner_mode "$V/disks/sda")" "root:$OPS 640" "vm1/disks/sda (image 0640 root:$OPS)"
chgrp root "$IMG"
chmod 0644 "$IMG"

step "$OTHER: properties read, but no mkdir, method, disk (EACCES), no job record"
allowed "$OTHER" 'cat "$V/ElementName"'
before=$(njobs)
denied "$OTHER" 'mkdir "$RPS/by-other"'
denied "$OTHER" 'echo by-other > "$V/CreateReferencePoint"'
denied "$OTHER" 'cat "$V/disks/sda"'
denied "$OTHER" 'ls "$V/disks"'
[[ ! -e $RPS/by-other ]] || fail "$OTHER created a reference point"
assert_eq "$(njobs)" "$before" "number of job records after the refused calls"

step "$OP (group member): mkdir creates a reference point"
allowed "$OP" 'mkdir "$RPS/rp-op"'
[[ -d $RPS/rp-op ]] || fail "rp-op missing after mkdir by $OP"
allowed "$OP" 'echo rp-op2 > "$V/CreateReferencePoint"'
[[ -d $RPS/rp-op2 ]] || fail "rp-op2 missing after CreateReferencePoint by $OP"
allowed "$OP" 'ls "$V/disks"'

step "$OP reads a disk only as far as the image's mode lets $OP"
# root:root 0644: $OP is in the image's other class, which may read.
allowed "$OP" 'cmp <(head -c 1M "$V/disks/sda") <(head -c 1M /dev/zero | tr "\0" "\021")'
allowed "$OP" 'head -c 4096 "$RPS/rp-op/disks/sda" >/dev/null'
chmod 0640 "$IMG"
denied "$OP" 'head -c 1 "$V/disks/sda"'
denied "$OP" 'head -c 1 "$RPS/rp-op/disks/sda"'
chgrp "$OPS" "$IMG"
allowed "$OP" 'head -c 1 "$V/disks/sda"'
allowed "$OP" 'head -c 1 "$RPS/rp-op/disks/sda"'
step "... and writes it only when the image's mode gives $OP write"
denied "$OP" 'printf x | dd of="$V/disks/sda" bs=1 seek=8M conv=notrunc status=none'
chmod 0660 "$IMG"
allowed "$OP" 'printf x | dd of="$V/disks/sda" bs=1 seek=8M conv=notrunc status=none'
assert_eq "$(dd if="$V/disks/sda" bs=1 skip=8M count=1 status=none)" x "byte written by $OP"
step "... while $OTHER, no operator, reads nothing even from a 0666 image"
chmod 0666 "$IMG"
denied "$OTHER" 'head -c 1 "$V/disks/sda"'
denied "$OTHER" 'head -c 1 "$RPS/rp-op/disks/sda"'
chmod 0644 "$IMG"
chgrp root "$IMG"

step "$OTHER: no setting, no RemoveAssociatedData, no export, no rmdir (EACCES)"
R=$RPS/rp-op
export R
before=$(njobs)
denied "$OTHER" 'echo sda > "$R/ExportSettingData/DisksToExport"'
assert_eq "$(cat "$R/ExportSettingData/DisksToExport")" "" "DisksToExport after the refused write"
denied "$OTHER" 'echo 1 > "$R/RemoveAssociatedData"'
assert_file_eq "$R/HasAssociatedData" true
E_OTHER=$(new_dir by-other)
chown "$OTHER" "$E_OTHER"
export E_OTHER
denied "$OTHER" 'echo "$E_OTHER" > "$R/ExportReferencePoint"'
assert_empty_dir "$E_OTHER"
denied "$OTHER" 'rmdir "$RPS/rp-op2"'
[[ -d $RPS/rp-op2 ]] || fail "$OTHER removed rp-op2"
assert_eq "$(njobs)" "$before" "number of job records after the refused calls"
step "... $OP may do all of these"
allowed "$OP" 'echo sda > "$R/ExportSettingData/DisksToExport"'
assert_file_eq "$R/ExportSettingData/DisksToExport" sda
allowed "$OP" 'rmdir "$RPS/rp-op2"'
[[ ! -e $RPS/rp-op2 ]] || fail "rp-op2 still there after rmdir by $OP"

step "the owner of vm2 ($OTHER) operates vm2, $OP does not"
allowed "$OTHER" 'mkdir "$MNT/vm2/referencepoints/by-owner"'
denied "$OP" 'mkdir "$MNT/vm2/referencepoints/by-op"'

step "a failed call of $OP: its description is for $OP and root, not $OTHER"
denied_before=$(njobs)
as "$OP" bash -c 'echo rp-op > "$V/CreateReferencePoint"' 2>/dev/null &&
  fail "a second rp-op was created"
read -r RV JOB DESC <<<"$(as "$OP" cat "$V/CreateReferencePoint")"
assert_eq "$RV" 32773 "ReturnValue of the duplicate CreateReferencePoint ($DESC)"
((JOB > 0 && $(njobs) > denied_before)) || fail "no job record for $OP's failed call"
J=$MNT/jobs/$JOB
export J
assert_eq "$(owner_mode "$J")" "$OP:$OPS 755" "jobs/$JOB/"
assert_eq "$(owner_mode "$J/RequestStateChange")" "$OP:$OPS 220" "jobs/$JOB/RequestStateChange"
[[ -n $(as "$OP" cat "$J/ErrorDescription") ]] || fail "$OP sees no ErrorDescription of its job"
[[ -n $(cat "$J/ErrorDescription") ]] || fail "root sees no ErrorDescription"
assert_eq "$(as "$OTHER" cat "$J/ErrorDescription")" "" "ErrorDescription as $OTHER"
assert_eq "$(as "$OTHER" cat "$J/status")" "Exception" "status as $OTHER"
[[ $(as "$OP" cat "$J/status") == "Exception: "?* ]] || fail "status as $OP has no description"
assert_eq "$(as "$OTHER" cat "$J/ReturnValue")" 32773 "ReturnValue as $OTHER"

step "a running export of $OP: $OTHER can neither cancel it nor see where it goes"
B=$MNT/vmbig/referencepoints
export B
allowed "$OP" 'mkdir "$B/big"'
E=$(new_dir op-export)
chown "$OP" "$E"
export E
as "$OP" bash -c 'echo "$E" > "$B/big/ExportReferencePoint"' || fail "export by $OP refused"
read -r RV JOB DESC <<<"$(as "$OP" cat "$B/big/ExportReferencePoint")"
assert_eq "$RV" 4096 "ReturnValue of the export by $OP ($DESC)"
J=$MNT/jobs/$JOB
export J
wait_running "$JOB" "$E"
denied "$OTHER" 'echo 4 > "$J/RequestStateChange"'
assert_eq "$(as "$OTHER" cat "$J/ExportDirectory")" "" "ExportDirectory as $OTHER"
assert_eq "$(as "$OP" cat "$J/ExportDirectory")" "$E" "ExportDirectory as $OP"
assert_eq "$(cat "$J/ExportDirectory")" "$E" "ExportDirectory as root"
assert_file_eq "$J/JobState" 4
step "... $OP cancels its own export"
allowed "$OP" 'echo 4 > "$J/RequestStateChange"'
wait_job_done "$J" 60
assert_file_eq "$J/JobState" 8
assert_empty_dir "$E"

step "root may do everything: cancel $OP's export, read a 0600 image, rmdir"
as "$OP" bash -c 'echo "$E" > "$B/big/ExportReferencePoint"' || fail "second export by $OP refused"
read -r RV JOB DESC <<<"$(as "$OP" cat "$B/big/ExportReferencePoint")"
J=$MNT/jobs/$JOB
wait_running "$JOB" "$E"
echo 4 >"$J/RequestStateChange" || fail "root could not cancel $OP's job"
wait_job_done "$J" 60
assert_file_eq "$J/JobState" 8
chmod 0600 "$IMG"
chown "$OP" "$IMG"
head -c 1 "$V/disks/sda" >/dev/null || fail "root cannot read a 0600 image of $OP"
allowed "$OP" 'head -c 1 "$V/disks/sda"'
denied "$OP" 'head -c 1 "$MNT/vm2/disks/sda"'
rmdir "$RPS/rp-op" || fail "root cannot rmdir $OP's reference point"
mkdir "$RPS/by-root" || fail "root cannot mkdir"
echo x >"$MNT/vm2/referencepoints/by-owner/RemoveAssociatedData" ||
  fail "root cannot call a method of $OTHER's system"

umount_rpfs "$MNT"
pass
