#!/bin/bash
# Streamed exports (reference.md 9, "Streamed exports"): cat and dd of
# referencepoints/<rp>/export.tar... are complete archives of the disks at
# the reference point; each open is a job (203) that ends Completed at EOF.
# A reader that closes half way, or a cancel, ends the job Terminated, the
# reader gets an error and its partial copy fails tar -t; nothing is left
# behind.  A failing check fails open(2) and leaves a job record.  Only
# operators may read a stream.  Two streams run at once.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires tar zstd dd python3

mk_store vm1 sda:1G sdb:16M
fill_busy "$(img_of vm1 sda)"
for d in sda sdb; do raw_of "$(img_of vm1 $d)" "$WORK/$d-at-rp1.raw"; done
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
mkdir "$RPS/rp1"
fill_file "$MNT/vm1/disks/sdb" 0x77 0 1M

check_stream() { # FILE FORMAT-OPTION
  local x=$WORK/x.$RANDOM
  mkdir "$x"
  tar "$2" -xSf "$1" -C "$x" || fail "tar -x of $1"
  (cd "$x/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS in $1"
  for d in sda sdb; do
    cmp "$x/vm1/disks/$d.raw" "$WORK/$d-at-rp1.raw" || fail "$d of $1 is not the disk at rp1"
  done
  rm -rf "$x"
}
newest_job() { ls "$MNT/jobs" | sort -n | tail -n 1; }

step "the stream files: 0440, root:root, size 0, listed"
assert_eq "$(stat -c '%A %U %G %s' "$RPS/rp1/export.tar.zst")" "-r--r----- root root 0" "ls -l of export.tar.zst"
for f in export.tar export.tar.gz export.tar.xz export.tar.zst; do
  ls "$RPS/rp1" | grep -qx "$f" || fail "$f not listed"
done

step "cat export.tar.zst: a complete archive; the job Completed"
O=$(new_dir out)
cat "$RPS/rp1/export.tar.zst" >"$O/a.tar.zst" || fail "cat failed"
J=$(newest_job)
assert_file_eq "$MNT/jobs/$J/JobType" 203
wait_job_done "$MNT/jobs/$J" 30
assert_job_completed "$J"
assert_file_eq "$MNT/jobs/$J/PercentComplete" 100
check_stream "$O/a.tar.zst" --zstd

step "dd bs=1M of export.tar"
dd if="$RPS/rp1/export.tar" of="$O/b.tar" bs=1M status=none || fail "dd failed"
check_stream "$O/b.tar" -v
seek=$(python3 -c 'import os, sys
f = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.lseek(f, 0, 0); print("seekable")
except OSError as e:
    print(e.errno)' "$RPS/rp1/export.tar")
assert_eq "$seek" 29 "lseek on a stream (ESPIPE)"

step "two streams at once (rp1 and rp2); a second open of rp1 meanwhile: EBUSY"
mkdir "$RPS/rp2"
cp --sparse=always "$MNT/vm1/disks/sdb" "$WORK/sdb-at-rp2.raw"
exec 7<"$RPS/rp1/export.tar"
assert_fails_with EBUSY "cat '$RPS/rp1/export.tar.gz' >/dev/null"
cat "$RPS/rp2/export.tar" >"$O/rp2.tar" &
P2=$!
cat <&7 >"$O/rp1.tar"
exec 7<&-
wait $P2 || fail "the stream of rp2 failed"
check_stream "$O/rp1.tar" -v
mkdir "$O/x2" && tar -xSf "$O/rp2.tar" -C "$O/x2"
cmp "$O/x2/vm1/disks/sdb.raw" "$WORK/sdb-at-rp2.raw" || fail "sdb of rp2's stream"

step "a reader that stops half way: Terminated, the copy fails tar -t, nothing left"
head -c 3M "$RPS/rp1/export.tar" >"$O/half.tar"
J=$(newest_job)
wait_job_done "$MNT/jobs/$J" 30
assert_file_eq "$MNT/jobs/$J/JobState" 8
tar -tf "$O/half.tar" >/dev/null 2>&1 && fail "tar -t accepted half a stream"
[[ -z $(ls "$STORE/state/exports") ]] || fail "export marker left"

step "RequestStateChange cancels a stream: the reader gets an error"
( exec cat "$RPS/rp1/export.tar.gz" >"$O/cancel.tar.gz" 2>"$WORK/cat.err" ) &
P=$!
wait_until 20 "a running stream job" \
  bash -c "[[ \$(cat '$MNT/jobs/'\$(ls '$MNT/jobs' | sort -n | tail -n 1)'/JobState') == 4 ]]"
J=$(newest_job)
echo 4 >"$MNT/jobs/$J/RequestStateChange"
rc=0
wait $P || rc=$?
((rc != 0)) || fail "cat of a cancelled stream succeeded"
assert_file_eq "$MNT/jobs/$J/JobState" 8
tar -tzf "$O/cancel.tar.gz" >/dev/null 2>&1 && fail "tar -t accepted a cancelled stream"

step "checks at open(2): no associated data -> EPERM with a job record"
echo x >"$RPS/rp2/RemoveAssociatedData"
assert_fails_with EPERM "cat '$RPS/rp2/export.tar' >/dev/null"
J=$(newest_job)
assert_file_eq "$MNT/jobs/$J/ReturnValue" 32775
assert_file_eq "$MNT/jobs/$J/JobState" 10
[[ -n $(cat "$MNT/jobs/$J/ErrorDescription") ]] || fail "empty ErrorDescription"
assert_fails_with EACCES "exec 3>'$RPS/rp1/export.tar'"

step "a user who is no operator may not read a stream (EACCES, no job)"
before=$(ls "$MNT/jobs" | wc -l)
assert_fails_with --as-user EACCES "cat '$RPS/rp1/export.tar' >/dev/null"
assert_eq "$(ls "$MNT/jobs" | wc -l)" "$before" "jobs after a refused open"

umount_rpfs "$MNT"
pass
