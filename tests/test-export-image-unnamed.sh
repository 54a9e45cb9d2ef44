#!/bin/bash
# An export's disk image has no name until its hashes are done (design.md,
# "Acting for a caller" 4): while the export runs, the assembly directory's
# disks/ holds no image the caller could open and change under the
# SHA-256 and the digest table that rpfs stores; at the end the image is
# there, owned by the caller, and SHA256SUMS and VerifyExport agree with it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G
fill_busy "$(img_of vm1 sda)"
echo "owner = 65534" >>"$STORE/systems/vm1.conf"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
mkdir "$RPS/rp1"
E=$TMPROOT/exports
mkdir "$E"
chown 65534:65534 "$E"

step "while the export runs, disks/ of its assembly directory lists no image"
export _E=$E _F=$RPS/rp1/ExportReferencePoint
# shellcheck disable=SC2016 # expanded by the bash -c that runs it
as_user bash -c 'printf "%s\n" "$_E" > "$_F"' || fail "the export was refused"
JOB=$(ls -v "$MNT/jobs" | tail -n 1)
wait_running "$JOB" "$E"
# Looked at while the copy runs (PercentComplete below 90: the image is
# being written); it is named just before the job ends.
seen=0
while [[ $(job_state "$JOB") == 4 ]]; do
  for d in "$E"/.vm1.*.part/disks; do
    # (the directory is renamed when the export ends: then it is gone)
    listed=$(ls -A "$d" 2>/dev/null) || continue
    pct=$(cat "$MNT/jobs/$JOB/PercentComplete")
    ((pct < 90)) || continue
    seen=$((seen + 1))
    [[ -z $listed ]] || fail "disks/ of the export lists $listed at $pct %"
  done
  sleep 0.05
done
((seen)) || fail "the running export's disks/ was never seen; raise RPFS_TEST_BUSY_MB (now $BUSY_MB)"
assert_job_completed "$JOB"

step "afterwards the image is there, the caller's, and the hashes agree"
assert_eq "$(stat -c %u "$E/vm1/disks/sda.qcow2")" 65534 "owner of the image"
(cd "$E/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"
call_method "$RPS/rp1/VerifyExport" "$E"$'\n'
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"
umount_rpfs "$MNT"
pass
