#!/bin/bash
# VerifyExport (reference.md): re-hashes what an export restores to (through
# qemu-nbd, following the backing chain) and the live point-in-time disk,
# against the reference point's digest table.  A good full and a good
# differential export pass; a copy of the full export with one byte flipped
# in the middle of a data cluster fails, naming the disk and the block; the
# export's own table serves when the store has none; bad arguments are
# refused at once (EINVAL), and a user who is no operator gets EACCES.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

# verify RP DIR: start VerifyExport, wait; sets JOB.
verify() {
  call_method "$RPS/$1/VerifyExport" "$2"$'\n'
  assert_eq "$RV" 4096 "ReturnValue of VerifyExport ($DESC)"
  wait_job_done "$MNT/jobs/$JOB"
  assert_file_eq "$MNT/jobs/$JOB/JobType" 210
}

step "rp1 full export, change, rp2 differential export"
mkdir "$RPS/rp1"
E1=$(new_dir full)
export_rp "$RPS/rp1" "$E1"
fill_file "$MNT/vm1/disks/sda" 0xa1 2M 256K
mkdir "$RPS/rp2"
E2=$(new_dir diff)
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"

step "good exports pass (the export and the live point-in-time disk)"
verify rp1 "$E1"
assert_job_completed "$JOB"
verify rp2 "$E2"
assert_job_completed "$JOB"
verify rp2 "$E2/vm1"
assert_job_completed "$JOB"

step "one byte flipped in a data cluster of a copy: Exception naming the block"
B=$(new_dir bad)
cp -a "$E1/vm1" "$B/"
IMG=$B/vm1/disks/sda.qcow2
GUEST=$((4 * 1024 * 1024 + 200 * 1024 + 5)) # in the 0x12 data at 4M
HOST=$(qemu-img map --output=json "$IMG" | tr -d ' ' | tr '}' '\n' |
  sed -n 's/.*"start":\([0-9]*\),"length":\([0-9]*\),.*"data":true.*"offset":\([0-9]*\).*/\1 \2 \3/p' |
  awk -v g="$GUEST" '$1 <= g && g < $1 + $2 { print $3 + g - $1 }')
[[ -n $HOST ]] || fail "no host offset for guest offset $GUEST in $IMG"
printf '\x5a' | dd of="$IMG" bs=1 seek="$HOST" conv=notrunc status=none
verify rp1 "$B"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
echo "   ErrorDescription: $desc"
assert_match "$desc" "^disk sda: block $((GUEST / 65536)) " "the failure names the disk and block"
assert_match "$(cat "$MNT/jobs/$JOB/status")" "^Exception: disk sda" "status of the failed verification"

step "without the store's tables, the export's own table serves"
rm "$STORE"/state/vm1/rp/rp1/*.digests
verify rp1 "$E1"
assert_job_completed "$JOB"
verify rp1 "$B"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10

step "bad arguments are refused at once"
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" $'relative/dir\n'
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" "$TMPROOT/nonexistent"$'\n'
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" "$E2"$'\n'
echo "   another reference point's export: $(cat "$MNT/jobs/$JOB/ErrorDescription")"
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" "$E1"$'\nFoo=bar\n'
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" "$MNT"$'\n'
export _F=$RPS/rp1/VerifyExport _P=$E1
# shellcheck disable=SC2016 # expanded by the bash -c that runs it
assert_fails_with --as-user EACCES 'printf "%s\n" "$_P" > "$_F"'

umount_rpfs "$MNT"
pass
