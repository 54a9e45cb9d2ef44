#!/bin/bash
# A full export (interface.md 5.3): echo DIR > <rp>/ExportReferencePoint
# writes DIR/<system>/{config,referencepoint,disks/<id>.qcow2,SHA256SUMS};
# the images hold the disks as they were at the reference point and no data
# where the source had none; the job record tells how it went.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum

mk_store vm1 sda:32M sdb:16M
write_pattern "$(img_of vm1 sda)" 0x3c 12M 192K
for d in sda sdb; do
  raw_of "$(img_of vm1 $d)" "$WORK/$d-at-rp1.raw"
  data_ranges "$(img_of vm1 $d)" >"$WORK/$d-src.ranges"
done
cp "$STORE/systems/vm1.conf" "$WORK/vm1.conf-at-rp1"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1

step "mkdir rp1, then change the current disk (the export must not see it)"
mkdir "$RP"
fill_file "$MNT/vm1/disks/sda" 0xf0 0 2M
fill_file "$MNT/vm1/disks/sda" 0xf1 24M 1M

step "echo DIR > ExportReferencePoint starts a job (4096)"
E=$(new_dir e1)
start_export "$RP" "$E"
assert_file_eq "$MNT/jobs/$JOB/JobType" 203
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 4096
assert_eq "$(basename "$(readlink "$RP/job")")" "$JOB" "rp1/job symlink"
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"

step "the job record of a completed export"
J=$MNT/jobs/$JOB
for f in InstanceID JobType JobState PercentComplete ReturnValue ErrorCode \
  ErrorDescription Cancellable TimeSubmitted StartTime ElapsedTime \
  TimeOfLastStateChange ExportDirectory ReferencePointId BaseReferencePointId \
  ExportedDisks status RequestStateChange; do
  [[ -e $J/$f ]] || fail "job $JOB has no $f"
done
assert_file_eq "$J/PercentComplete" 100
assert_file_eq "$J/ErrorCode" 0
assert_file_eq "$J/status" Completed
assert_file_eq "$J/ExportDirectory" "$E"
assert_file_eq "$J/ReferencePointId" "$(cat "$RP/InstanceID")"
assert_file_eq "$J/BaseReferencePointId" ""
assert_file_eq "$J/ExportedDisks" $'sda\nsdb'
ISO='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
for f in TimeSubmitted StartTime TimeOfLastStateChange; do
  assert_match "$(cat "$J/$f")" "$ISO" "$f"
done
read_result "$RP/ExportReferencePoint"
assert_eq "$RV" 4096 "result line of ExportReferencePoint"

step "layout: only DIR/vm1 with config, referencepoint, disks/*.qcow2, disks/*.digests, SHA256SUMS"
assert_eq "$(ls -A "$E")" vm1 "content of the export directory"
X=$E/vm1
assert_eq "$(cd "$X" && find . -mindepth 1 | sort | tr '\n' ' ')" \
  "./SHA256SUMS ./config ./disks ./disks/sda.digests ./disks/sda.qcow2 ./disks/sdb.digests ./disks/sdb.qcow2 ./referencepoint " \
  "files of the export"

step "sha256sum -c SHA256SUMS verifies every file"
(cd "$X" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"
assert_eq "$(awk '{ print $2 }' "$X/SHA256SUMS" | sed 's/^\*//' | sort | tr '\n' ' ')" \
  "config disks/sda.digests disks/sda.qcow2 disks/sdb.digests disks/sdb.qcow2 referencepoint " "files listed in SHA256SUMS"

step "config is the definition at rp1; referencepoint names rp1"
for d in sda sdb; do
  grep -qE "^disk +$d *= *$(img_of vm1 $d)\$" "$X/config" ||
    fail "config lacks the line for disk $d: $(cat "$X/config")"
done
grep -qF "$(cat "$RP/InstanceID")" "$X/referencepoint" || fail "referencepoint does not hold rp1's InstanceID"

step "each image is a standalone qcow2 holding the disk at rp1"
for d in sda sdb; do
  img=$X/disks/$d.qcow2
  qemu-img check -q "$img" || fail "qemu-img check $d.qcow2 failed"
  assert_eq "$(qemu-img info --output=json "$img" | sed -n 's/^ *"format": "\(.*\)",*$/\1/p')" qcow2 "format of $d.qcow2"
  assert_eq "$(backing_of "$img")" "" "backing file of a full export"
  raw_of "$img" "$WORK/$d-exported.raw"
  cmp "$WORK/$d-exported.raw" "$WORK/$d-at-rp1.raw" || fail "$d.qcow2 is not the disk at rp1"
done

step "qemu-img map: no data where the source had none"
for d in sda sdb; do
  alloc_ranges "$X/disks/$d.qcow2" >"$WORK/$d-exp.ranges"
  assert_ranges_within "$d.qcow2" "$WORK/$d-exp.ranges" "$WORK/$d-src.ranges"
done

step "ExportDirectory need not exist when its parent does"
E2=$TMPROOT/new-dir
start_export "$RP" "$E2"
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"
(cd "$E2/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed in $E2/vm1"

umount_rpfs "$MNT"
pass
