#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c, eval)
# A crash during an export (kill -9 of rpfs and its qemu-storage-daemon):
# after a new mount no half export is visible in the export directory (no
# hidden temporary one either), the reference points are still there, and a
# differential export from a base whose tracking could not be trusted is
# refused with EPERM and a reason; a fresh reference point exports again.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G sdb:16M
fill_busy "$(img_of vm1 sda)"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

step "rp1, rp2, export of rp2 running"
mkdir "$RPS/rp1"
fill_file "$MNT/vm1/disks/sdb" 0x2d 1M 64K
mkdir "$RPS/rp2"
E=$(new_dir e1)
start_export "$RPS/rp2" "$E"
wait_running "$JOB" "$E"
echo "   in the export directory: $(listing "$E")"

step "kill -9 the qemu-storage-daemon and rpfs"
mapfile -t qsd < <(qsd_pids "$STORE")
((${#qsd[@]} > 0)) || fail "no qemu-storage-daemon found for the store"
crash_rpfs "$MNT" "${qsd[@]}"

step "mount again: no export, no hidden temporary directory left"
mount_rpfs "$STORE" "$MNT"
wait_until 10 "$E to be emptied" eval '[[ -z $(ls -A "$E") ]]'
assert_empty_dir "$E"

step "the reference points are still listed"
assert_eq "$(listing "$RPS")" "rp1 rp2" "reference points after the crash"

step "a differential export from a pre-crash base is refused (EPERM) and says why"
mkdir "$RPS/rp3"
E3=$(new_dir diff)
method_refused EPERM 32775 "$RPS/rp3/ExportReferencePoint" "$E3"$'\nBaseReferencePoint=rp1\n'
echo "   ErrorDescription: $(cat "$MNT/jobs/$JOB/ErrorDescription")"
assert_empty_dir "$E3"

step "a full export of the new rp3 (its small disk) works"
E4=$(new_dir full)
export_rp "$RPS/rp3" "$E4" "DisksToExport=sdb"
(cd "$E4/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"

umount_rpfs "$MNT"
pass
