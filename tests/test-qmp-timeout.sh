#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c, eval)
# A slow QEMU is not a dead one (issue 10 §3): with the test-only knob
# RPFS_QMP_TIMEOUT_MS=1500, a qemu-storage-daemon stopped (SIGSTOP) for a few
# seconds makes rmdir fail with ETIMEDOUT (ReturnValue 32772) and changes
# nothing; after SIGCONT the same daemon goes on (not restarted), the
# reference point is still there, and the change tracking survives: a
# differential export from rp1 to rp2 works and after unmount the images
# carry both bitmaps, none in use.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M
export RPFS_QMP_TIMEOUT_MS=1500
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

mkdir "$RPS/rp1"
mkdir "$RPS/rp2"
mapfile -t qsd < <(qsd_pids "$STORE")
((${#qsd[@]} == 1)) || fail "expected one qemu-storage-daemon, found ${#qsd[@]}"
cleanup_add "kill -CONT ${qsd[0]} 2>/dev/null"

step "the daemon is stopped: rmdir rp2 fails with ETIMEDOUT, ReturnValue 32772"
kill -STOP "${qsd[0]}"
export RPS
assert_fails_with ETIMEDOUT 'rmdir "$RPS/rp2"'
JOB=$(for j in $(ls "$MNT/jobs" | sort -n); do
  [[ $(cat "$MNT/jobs/$j/JobType") == 202 ]] && echo "$j"; done | tail -1)
[[ -n $JOB ]] || fail "no DestroyReferencePoint job"
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 32772
desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
echo "   ErrorDescription: $desc"
assert_match "$desc" 'Timeout' "ErrorDescription"
kill -CONT "${qsd[0]}"

step "rp2 is still there; the same daemon serves on"
assert_eq "$(listing "$RPS")" "rp1 rp2" "ls referencepoints"
assert_file_eq "$RPS/rp2/HasAssociatedData" true
mapfile -t now < <(qsd_pids "$STORE")
assert_eq "${now[*]}" "${qsd[0]}" "qemu-storage-daemon pid"
ct=$(cat "$RPS/rp2/ChangeTracking")
echo "   rp2 ChangeTracking: $ct"
[[ $ct != lost* ]] || fail "rp2's tracking is lost: $ct"

step "rmdir works once QEMU answers again; tracking kept"
mkdir "$RPS/rp3"
rmdir "$RPS/rp2"
assert_eq "$(listing "$RPS")" "rp1 rp3" "ls referencepoints"
E=$(new_dir e1)
export_rp "$RPS/rp3" "$E" "BaseReferencePoint=rp1"

step "after unmount the images carry rp1's and rp3's bitmaps, none in use"
umount_rpfs "$MNT"
img=$(img_of vm1 sda)
[[ $(bitmaps_of "$img" | grep -c 'rpfs-0') == 2 ]] ||
  fail "expected 2 rpfs bitmaps, got: $(bitmaps_of "$img" | tr '\n' ' ')"
assert_no_bitmap_in_use "$img"
pass
