#!/bin/bash
# Malformed writes to every method and setting file (reference.md 7): garbage,
# overlong lines, requests over the size limit, NUL bytes, carriage returns,
# empty lines, unknown and repeated keys, empty opens, writes at a wrong
# offset, and bad mkdir / rmdir names.  rpfs must refuse them and stay up; the
# clean unmount at the end runs the sanitizer check of umount_rpfs, so under
# make SANITIZE=1 this test proves that no refusal path leaks.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:16M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
SYS=$MNT/vm1
RP=$SYS/referencepoints/rp1
mkdir "$RP"
RCT=$SYS/referencepoints/rct
call_method "$SYS/CreateReferencePoint" $'rct\nReferencePointType=2\n'
E=$(new_dir export)

# Payloads in files, so that NUL bytes survive; each goes in with one write.
P=$WORK/payloads
mkdir -p "$P"
printf 'x%.0s' $(seq 70000) >"$P/over-limit"                  # > 65536 bytes
{ printf 'y%.0s' $(seq 4000); printf '\n'; } >"$P/long-line"
printf 'abc\0def\n' >"$P/nul"
printf '\0' >"$P/nul-only"
printf 'a\r\nb\r\n' >"$P/crlf"
printf 'a\n\nb\n' >"$P/empty-line"
printf '\n\n\n' >"$P/newlines"
printf '%s\nNoSuchKey=1\n' "$E" >"$P/unknown-key"
printf '%s\nFormat=qcow2\nFormat=tar\n' "$E" >"$P/twice"
printf '%s\n=v\n' "$E" >"$P/empty-key"
printf '%s\nK=v\npositional\n' "$E" >"$P/positional-after-key"
printf '%s\n9bad key=1\n' "$E" >"$P/bad-key"
printf '\xff\xfe\x80garbage\x01\x02\n' >"$P/binary"
printf 'rp1\nReferencePointType=7\nConsistencyLevel=x\n' >"$P/bad-values"
printf '/nonexistent/config\n/nonexistent/referencepoint\n' >"$P/missing-files"
printf '%s\n%s\n%s\n' /a /b /c >"$P/three-lines"
printf ' \t \n' >"$P/blank"
printf '../../etc\n' >"$P/dotdot"
printf '%s\n' "$(printf 'n%.0s' $(seq 300))" >"$P/long-name"

# poke FILE PAYLOAD: write the payload file in one write(2); the outcome does
# not matter, only that rpfs survives it.
poke() {
  dd if="$P/$2" of="$1" bs=1M count=1 iflag=fullblock status=none 2>/dev/null || true
}

# poke_all FILE: every payload, an open without a write (O_TRUNC), and a
# write at a wrong offset.
poke_all() {
  local f=$1 p
  for p in "$P"/*; do
    poke "$f" "$(basename "$p")"
  done
  : >"$f" 2>/dev/null || true
  printf 'abc\n' | dd of="$f" bs=4 seek=3 conv=notrunc status=none 2>/dev/null || true
  rpfs_alive "$MNT" || fail "rpfs died while writing malformed requests to $f"
}

step "system methods"
poke_all "$SYS/CreateReferencePoint"
poke_all "$SYS/ImportReferencePointMetadata"
step "reference point methods and settings"
for rp in "$RP" "$RCT"; do
  poke_all "$rp/ExportReferencePoint"
  poke_all "$rp/ExportSettingData/BaseReferencePoint"
  poke_all "$rp/ExportSettingData/DisksToExport"
done
poke_all "$RCT/RemoveAssociatedData"
step "a job's RequestStateChange"
poke_all "$MNT/jobs/$JOB/RequestStateChange"
step "read-only files and disks refuse writes"
poke "$RP/InstanceID" garbage 2>/dev/null || true
poke "$SYS/ElementName" nul 2>/dev/null || true

step "bad mkdir / rmdir names"
for name in 'a b' '.hidden' 'x:y' "$(printf 'n%.0s' $(seq 100))"; do
  mkdir "$SYS/referencepoints/$name" 2>/dev/null || true
  rmdir "$SYS/referencepoints/$name" 2>/dev/null || true
done
rmdir "$SYS/referencepoints/nosuch" 2>/dev/null || true

step "every method still works after all that"
call_method "$SYS/CreateReferencePoint" $'rp2\n'
assert_eq "$RV" 0 "ReturnValue of CreateReferencePoint ($DESC)"
assert_eq "$(listing "$SYS/referencepoints")" "rct rp1 rp2" "reference points"
printf 'sda\n' >"$RP/ExportSettingData/DisksToExport"
assert_file_eq "$RP/ExportSettingData/DisksToExport" sda

# refused_whole ERRNO RV FILE PAYLOAD-FILE: the payload in one write(2) fails
# with ERRNO; the result line and a job record say RV and why.  Sets JOB.
refused_whole() {
  local errno=$1 rv=$2 f=$3 p=$P/$4 err
  export _F=$f _P=$p
  # shellcheck disable=SC2016 # expanded by the bash -c that runs it
  assert_fails_with "$errno" 'dd if="$_P" of="$_F" bs=1M count=1 iflag=fullblock status=none'
  read_result "$f"
  assert_eq "$RV" "$rv" "ReturnValue in the result of $f"
  assert_file_eq "$MNT/jobs/$JOB/ReturnValue" "$rv"
}

step "a request over the size limit in one write: EINVAL, a job record and a result line"
for f in "$SYS/CreateReferencePoint" "$SYS/ImportReferencePointMetadata" \
  "$RP/ExportReferencePoint" "$RP/RemoveAssociatedData"; do
  refused_whole EINVAL 32773 "$f" over-limit
  assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "larger than 65536 bytes" \
    "ErrorDescription of $(basename "$f") over the limit"
done
assert_file_eq "$RP/HasAssociatedData" true
step "... and one that grows over it in several writes fails in the write that crosses it"
export _F=$RP/ExportReferencePoint
# shellcheck disable=SC2016
assert_fails_with EINVAL '{ printf "%s\n" "$(printf "/%.0s" $(seq 65000))"; printf "%s\n" "$(printf "x%.0s" $(seq 1000))"; } > "$_F"'
read_result "$_F"
assert_eq "$RV" 32773 "ReturnValue of a request grown over the limit"

step "extended attributes: ENOTSUP on every node (the kernel's EPERM for user.* on the job link)"
for node in "$MNT" "$SYS" "$SYS/ElementName" "$SYS/CreateReferencePoint" \
  "$SYS/disks/sda" "$RP" "$RP/ExportSettingData/DisksToExport" "$RP/disks/sda" \
  "$MNT/jobs" "$MNT/jobs/$JOB" "$MNT/jobs/$JOB/JobState" "$RP/job"; do
  export _N=$node
  # shellcheck disable=SC2016
  assert_fails_with ENOTSUP 'setfattr -n user.rpfs -v 1 "$_N"'
  # shellcheck disable=SC2016
  assert_fails_with ENOTSUP 'setfattr -h -n trusted.rpfs -v 1 "$_N"'
  # shellcheck disable=SC2016
  assert_fails_with ENOTSUP 'getfattr -h -n trusted.rpfs "$_N"'
done
export _N=$RP/job
# shellcheck disable=SC2016
assert_fails_with EPERM 'setfattr -h -n user.rpfs -v 1 "$_N"'

step "a name longer than 255 bytes: ENAMETOOLONG, no job; up to 255 an invalid name: EINVAL"
export _D=$SYS/referencepoints/$(printf 'n%.0s' $(seq 300))
jobs_before=$(listing "$MNT/jobs")
# shellcheck disable=SC2016
assert_fails_with ENAMETOOLONG 'mkdir "$_D"'
# shellcheck disable=SC2016
assert_fails_with ENAMETOOLONG 'stat "$_D"'
# shellcheck disable=SC2016
assert_fails_with ENAMETOOLONG 'rmdir "$_D"'
assert_eq "$(listing "$MNT/jobs")" "$jobs_before" "jobs after a too long mkdir"
export _D=$SYS/referencepoints/$(printf 'n%.0s' $(seq 255))
# shellcheck disable=SC2016
assert_fails_with EINVAL 'mkdir "$_D"'

step "unmount: clean, and no sanitizer report in the log"
umount_rpfs "$MNT"
pass
