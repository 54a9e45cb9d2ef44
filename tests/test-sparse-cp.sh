#!/bin/bash
# Sparse disks (interface.md 4): a 64 GiB disk with a few MiB of data has
# st_size 64 GiB, a small st_blocks (du), answers SEEK_DATA/SEEK_HOLE, so
# cp --sparse=always copies it in seconds, exactly.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SIZE=68719476736
new_store
add_system vm1 sda:64G
IMG=$(img_of vm1 sda)
write_pattern "$IMG" 0x5e 10G 2M
write_pattern "$IMG" 0x6f $((SIZE - 1048576)) 1M
raw_of "$IMG" "$WORK/sda-at-rp1.raw"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"
# after rp1: must not show in rp1's copy
fill_file "$MNT/vm1/disks/sda" 0x7a 20G 1M

step "st_size is the virtual size, du is small"
for f in "$MNT/vm1/disks/sda" "$RP/disks/sda"; do
  assert_eq "$(stat -c %s "$f")" "$SIZE" "st_size of $f"
  kib=$(du -k "$f" | cut -f1)
  echo "   du $f: ${kib} KiB"
  ((kib > 0 && kib < 32 * 1024)) || fail "du of $f is $kib KiB; expected a few MiB"
done

step "cp --sparse=always of rp1/disks/sda finishes within 120 s"
start=$SECONDS
timeout 120 cp --sparse=always "$RP/disks/sda" "$WORK/copy.raw" ||
  fail "cp --sparse=always did not finish in 120 s (SEEK_DATA/SEEK_HOLE not answered?)"
echo "   took $((SECONDS - start)) s"

step "the copy is sparse and equal to the disk at rp1"
kib=$(du -k "$WORK/copy.raw" | cut -f1)
((kib < 32 * 1024)) || fail "the copy uses $kib KiB: holes were not kept"
assert_eq "$(stat -c %s "$WORK/copy.raw")" "$SIZE" "size of the copy"
qemu-img compare -q -f raw -F raw "$WORK/copy.raw" "$WORK/sda-at-rp1.raw" ||
  fail "the copy differs from the disk at rp1"

umount_rpfs "$MNT"
pass
