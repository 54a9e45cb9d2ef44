#!/bin/bash
# Reading a point-in-time disk in every pattern a user's tools use: rpfs
# reads such a disk ahead in 1 MiB chunks when the reads are sequential
# (core/dataplane/prefetch.c), so sequential, unaligned, backwards, concurrent and
# sparse-aware reads must all return exactly the disk at the reference point
# while the current disk changes under it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

mk_store vm1 sda:64M
# Random data (so a misplaced chunk cannot go unnoticed) in two extents
# that start and end off any 1 MiB boundary, with a hole between.
REF=$WORK/sda-at-rp1.raw
truncate -s 64M "$REF"
head -c $((20 * 1048576 + 4321)) /dev/urandom |
  dd of="$REF" bs=64K seek=3 conv=notrunc status=none iflag=fullblock
head -c $((17 * 1048576)) /dev/urandom |
  dd of="$REF" bs=1M oflag=seek_bytes seek=$((40 * 1048576 + 65536)) \
    conv=notrunc status=none iflag=fullblock
qemu-img convert -f raw -O qcow2 "$REF" "$(img_of vm1 sda)" ||
  fail "qemu-img convert failed"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
PIT=$RP/disks/sda

step "mkdir rp1, then overwrite the whole current disk"
mkdir "$RP"
fill_file "$MNT/vm1/disks/sda" 0xc7 0 64M

step "cat (128 KiB sequential reads) returns the disk at rp1"
cmp <(cat "$PIT") "$REF" || fail "cat of rp1/disks/sda differs"

step "dd with 1 MiB, 3 MiB and 4 KiB blocks, from unaligned offsets"
for spec in "1M 0" "3M 0" "4K 3141592" "1M 1048000"; do
  read -r bs skip <<<"$spec"
  cmp <(dd if="$PIT" bs="$bs" iflag=skip_bytes skip="$skip" status=none) \
    <(tail -c +$((skip + 1)) "$REF") ||
    fail "dd bs=$bs from offset $skip of rp1/disks/sda differs"
done

step "1 MiB blocks read backwards, each at an odd offset"
for ((i = 62; i >= 0; i--)); do
  off=$((i * 1048576 + 777))
  cmp <(dd if="$PIT" bs=1M count=1 iflag=skip_bytes skip=$off status=none) \
    <(dd if="$REF" bs=1M count=1 iflag=skip_bytes skip=$off status=none) ||
    fail "the 1 MiB at offset $off of rp1/disks/sda differs"
done

step "three readers at once, two of them on one open file"
cat "$PIT" >"$WORK/r1" &
p1=$!
exec 7<"$PIT"
dd bs=256K count=100 status=none <&7 >"$WORK/r2a" &
p2=$!
dd bs=64K status=none <&7 >"$WORK/r2b"
wait "$p2"
exec 7<&-
wait "$p1"
cmp "$WORK/r1" "$REF" || fail "a concurrent cat differs"
# The two readers of one open file shared its offset: together they read
# every byte once, in pieces that interleave.
[[ $(($(stat -c %s "$WORK/r2a") + $(stat -c %s "$WORK/r2b"))) == $((64 * 1048576)) ]] ||
  fail "two readers of one open file did not read the disk exactly once"

step "reads at and past the end return nothing"
assert_eq "$(dd if="$PIT" bs=1M skip=64 status=none | wc -c)" 0 "bytes read at the end"
assert_eq "$(dd if="$PIT" bs=4K iflag=skip_bytes skip=$((64 * 1048576 - 1000)) status=none | wc -c)" 1000 "bytes read over the end"

step "cp --sparse=always (SEEK_DATA/SEEK_HOLE, then reads) is exact and sparse"
cp --sparse=always "$PIT" "$WORK/cp.raw"
cmp "$WORK/cp.raw" "$REF" || fail "cp of rp1/disks/sda differs"
kib=$(du -k "$WORK/cp.raw" | cut -f1)
((kib < 40 * 1024)) || fail "cp wrote $kib KiB: the hole between the extents was not kept"

umount_rpfs "$MNT"
pass
