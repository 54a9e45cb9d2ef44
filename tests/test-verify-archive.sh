#!/bin/bash
# VerifyExport of archive exports (reference.md 9 and 15): an archive
# export holds each disk's digest table (disks/<disk>.digests, in
# SHA256SUMS) and leaves it in the store; VerifyExport takes a full archive
# file and hashes its disks in one pass (any compression), against the
# store's table or, without it, the archive's own; a copy repacked by GNU
# tar with one byte changed fails naming the disk and block; a cut-short
# archive fails; a differential archive (which restores only on its base)
# verifies as a file, its overlay staged and read alone: the blocks it
# holds against the reference point's table, the others against the
# base's; a copy repacked with one changed cluster fails naming the block,
# and so does one whose overlay lacks a changed block; unpacked next to its
# base, it verifies as a directory whose chain ends in the base's raw
# image.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires tar zstd sha256sum

mk_store vm1 sda:32M sdb:16M
# uid 65534 (as_user) calls VerifyExport below: make it an operator
echo "owner = 65534" >>"$STORE/systems/vm1.conf"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

verify() { # RP PATH: start VerifyExport, wait; sets JOB
  call_method "$RPS/$1/VerifyExport" "$2"$'\n'
  assert_eq "$RV" 4096 "ReturnValue of VerifyExport of $2 ($DESC)"
  wait_job_done "$MNT/jobs/$JOB"
}
failed_with() { # PATTERN: the job ended in Exception, its description matches
  assert_file_eq "$MNT/jobs/$JOB/JobState" 10
  local desc
  desc=$(cat "$MNT/jobs/$JOB/ErrorDescription")
  echo "   ErrorDescription: $desc"
  assert_match "$desc" "$1" "why the verification failed"
}

step "rp1 exported as tar.zst and as tar: tables in the archives and the store"
fill_file "$MNT/vm1/disks/sda" 0x5e 4M 3M
fill_file "$MNT/vm1/disks/sdb" 0x6f 1M 64K
mkdir "$RPS/rp1"
A=$(new_dir a) T=$(new_dir t)
export_rp "$RPS/rp1" "$A" Format=tar.zst
for d in sda sdb; do
  [[ -s $STORE/state/vm1/rp/rp1/$d.digests ]] || fail "no table of $d in the store after an archive export"
done
export_rp "$RPS/rp1" "$T" Format=tar
mkdir "$WORK/x"
tar -xSf "$T/vm1.tar" -C "$WORK/x"
(cd "$WORK/x/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS with the tables"
grep -q ' disks/sda.digests$' "$WORK/x/vm1/SHA256SUMS" || fail "sda.digests not in SHA256SUMS"
cmp "$WORK/x/vm1/disks/sda.digests" "$STORE/state/vm1/rp/rp1/sda.digests" ||
  fail "the archive's table differs from the store's"

step "good archives pass, compressed or not"
verify rp1 "$A/vm1.tar.zst"
assert_job_completed "$JOB"
assert_file_eq "$MNT/jobs/$JOB/JobType" 210
verify rp1 "$T/vm1.tar"
assert_job_completed "$JOB"

step "one byte changed in a copy repacked by GNU tar: Exception naming the block"
GUEST=$((5 * 1024 * 1024 + 77))
printf '\x00' | dd of="$WORK/x/vm1/disks/sda.raw" bs=1 seek=$GUEST conv=notrunc status=none
B=$(new_dir bad)
tar --format=pax -cSf "$B/vm1.tar" -C "$WORK/x" vm1
verify rp1 "$B/vm1.tar"
failed_with "^disk sda: block $((GUEST / 65536)) .* of the archived image does not match"

step "a cut-short archive fails"
C=$(new_dir cut)
head -c $(($(stat -c %s "$T/vm1.tar") / 2)) "$T/vm1.tar" >"$C/vm1.tar"
verify rp1 "$C/vm1.tar"
failed_with "vm1.tar"

step "without the store's tables, the archive's own table serves"
mkdir "$WORK/keep"
mv "$STORE"/state/vm1/rp/rp1/*.digests "$WORK/keep/"
verify rp1 "$A/vm1.tar.zst"
assert_job_completed "$JOB"
verify rp1 "$B/vm1.tar"
failed_with "^disk sda: block $((GUEST / 65536)) "
mv "$WORK"/keep/*.digests "$STORE/state/vm1/rp/rp1/"

step "a differential archive: verified as a file (compressed or not) and unpacked on its base"
fill_file "$MNT/vm1/disks/sda" 0x71 12M 1M
mkdir "$RPS/rp2"
D=$(new_dir d) DZ=$(new_dir dz)
export_rp "$RPS/rp2" "$D" Format=tar BaseReferencePoint=rp1
export_rp "$RPS/rp2" "$DZ" Format=tar.zst BaseReferencePoint=rp1
verify rp2 "$D/vm1.tar"
assert_job_completed "$JOB"
verify rp2 "$DZ/vm1.tar.zst"
assert_job_completed "$JOB"
assert_eq "$(listing "$DZ")" "vm1.tar.zst vm1.tar.zst.sha256" \
  "what the verification left next to the archive (the staging is unnamed)"

step "a differential archive with a changed cluster, and one missing a changed block"
mkdir "$WORK/dx"
tar -xSf "$D/vm1.tar" -C "$WORK/dx"
# (opened without its backing file, which is not unpacked here)
qemu-io -c "write -P 0x72 $((12 * 1024 * 1024 + 65536)) 4k" \
  "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"driver\": \"file\", \"filename\": \"$WORK/dx/vm1/disks/sda.qcow2\"}}" \
  >/dev/null
DB=$(new_dir dbad)
tar --format=pax -cSf "$DB/vm1.tar" -C "$WORK/dx" vm1
verify rp2 "$DB/vm1.tar"
failed_with "^disk sda: block $((12 * 16 + 1)) .* of the archived overlay does not match"
qemu-img create -q -f qcow2 "$WORK/dx/vm1/disks/sda.qcow2" 32M
tar --format=pax -cSf "$DB/vm1.tar" -C "$WORK/dx" vm1
verify rp2 "$DB/vm1.tar"
failed_with "^disk sda: block $((12 * 16)) .*it does not hold the block, but the block changed"

step "unpacked next to its base, as a directory"
# The overlays name the base's newest export, the tar in $T.
tar -xSf "$T/vm1.tar" -C "$T"
tar -xSf "$D/vm1.tar" -C "$D"
verify rp2 "$D/vm1"
assert_job_completed "$JOB"
verify rp1 "$T/vm1"
assert_job_completed "$JOB"

step "bad arguments: another point's archive, a stream inside the mount"
method_refused EINVAL 32773 "$RPS/rp2/VerifyExport" "$A/vm1.tar.zst"$'\n'
method_refused EINVAL 32773 "$RPS/rp1/VerifyExport" "$RPS/rp1/export.tar"$'\n'
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "inside the rpfs mount" \
  "why a stream is refused"

step "an archive the caller may not read: EACCES, the cause kept"
cp "$A/vm1.tar.zst" "$TMPROOT/secret.tar.zst"
chmod 0600 "$TMPROOT/secret.tar.zst"
export _F=$RPS/rp1/VerifyExport _P=$TMPROOT/secret.tar.zst
# shellcheck disable=SC2016 # expanded by the bash -c that runs it
assert_fails_with --as-user EACCES 'printf "%s\n" "$_P" > "$_F"'
assert_match "$(as_user cat "$_F")" "^32769 .*Permission denied" \
  "the result line of the refused verification"

umount_rpfs "$MNT"
pass
