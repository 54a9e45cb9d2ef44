#!/bin/bash
# The CreateReferencePoint method file (interface.md 5 and 5.1): a name and
# optional ReferencePointType / ConsistencyLevel lines; every call leaves a job
# record and a result line "<ReturnValue> <job-id> <description>".
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
CRP=$MNT/vm1/CreateReferencePoint
RPS=$MNT/vm1/referencepoints

step "echo rp1 > CreateReferencePoint: ReturnValue 0, a completed job of type 201"
call_method "$CRP" $'rp1\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_file_eq "$MNT/jobs/$JOB/JobType" 201
assert_file_eq "$MNT/jobs/$JOB/JobState" 7
assert_file_eq "$MNT/jobs/$JOB/ReturnValue" 0
assert_file_eq "$MNT/jobs/$JOB/PercentComplete" 100
assert_file_eq "$MNT/jobs/$JOB/status" Completed
assert_eq "$(basename "$(readlink "$RPS/rp1/job")")" "$JOB" "rp1/job symlink"

step "the default is a log based, crash consistent reference point with data"
assert_file_eq "$RPS/rp1/ReferencePointType" 1
assert_file_eq "$RPS/rp1/ConsistencyLevel" 2
assert_file_eq "$RPS/rp1/HasAssociatedData" true
assert_eq "$(listing "$RPS/rp1/disks")" "sda sdb" "ls rp1/disks"

step "ReferencePointType=2: RCT based, no associated data, no disk contents"
call_method "$CRP" $'rp2\nReferencePointType=2\n'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_file_eq "$MNT/jobs/$JOB/JobType" 201
assert_file_eq "$MNT/jobs/$JOB/JobState" 7
assert_file_eq "$RPS/rp2/ReferencePointType" 2
assert_file_eq "$RPS/rp2/HasAssociatedData" false
assert_file_eq "$RPS/rp2/VirtualDiskIdentifiers" $'sda\nsdb'
assert_eq "$(ls -A "$RPS/rp2/disks" 2>/dev/null)" "" "rp2/disks (no associated data)"

step "both keys given explicitly, without a trailing newline"
call_method "$CRP" $'rp3\nReferencePointType=1\nConsistencyLevel=2'
assert_eq "$RV" 0 "ReturnValue ($DESC)"
assert_file_eq "$RPS/rp3/ReferencePointType" 1
assert_file_eq "$RPS/rp3/ConsistencyLevel" 2

step "bad calls fail with EINVAL, leave a job with ReturnValue 32773, create nothing"
before=$(ls "$RPS")
for payload in $'rp4\nReferencePointType=3\n' $'rp4\nConsistencyLevel=7\n' \
  $'rp4\nColour=blue\n' $'rp4\nReferencePointType=1\nReferencePointType=2\n' \
  $'rp 4\n' $'\n' $'rp4\nrp5\n' $'rp1\n'; do
  echo "   payload: $(printf '%q' "$payload")"
  method_refused EINVAL 32773 "$CRP" "$payload"
  assert_file_eq "$MNT/jobs/$JOB/JobType" 201
  assert_eq "$(ls "$RPS")" "$before" "reference points after a refused call"
done

step "rp1 is untouched by the refused duplicate"
assert_file_eq "$RPS/rp1/ReferencePointType" 1

umount_rpfs "$MNT"
pass
