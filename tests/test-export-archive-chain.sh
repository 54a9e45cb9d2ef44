#!/bin/bash
# Differential archive exports restore with standard tools alone
# (reference.md 9, "Restoring an archive export"): rp1 full (tar.zst), rp2
# from rp1 (tar.xz), rp3 from rp1 (tar, a base other than the newest); each
# archive unpacked next to itself with tar, then qemu-img convert of the
# newest image gives the disk at that reference point.  A differential
# stream (no known place for its base) names no backing file; qemu-img
# rebase -u names it and the chain converts the same.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum tar zstd xz

mk_store vm1 sda:32M sdb:16M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
at() { # RP: record the disks as they are now
  for d in sda sdb; do cp --sparse=always "$MNT/vm1/disks/$d" "$WORK/$d-at-$1.raw"; done
}
mkdir "$RPS/rp1"; at rp1
fill_file "$MNT/vm1/disks/sda" 0xa1 0 1M
fill_file "$MNT/vm1/disks/sda" 0x00 4M 512K
fill_file "$MNT/vm1/disks/sdb" 0xb1 8M 64K
mkdir "$RPS/rp2"; at rp2
fill_file "$MNT/vm1/disks/sda" 0xa2 20M 3M
mkdir "$RPS/rp3"; at rp3
fill_file "$MNT/vm1/disks/sda" 0xff 0 8M   # after rp3: never exported

unpack() { # DIR FORMAT: unpack DIR/vm1.FORMAT next to itself, check sums
  (cd "$1" && sha256sum --quiet -c "vm1.$2.sha256") || fail "sidecar in $1"
  tar -xSf "$1/vm1.$2" -C "$1" || fail "tar -x $1/vm1.$2"
  (cd "$1/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS in $1"
}
restored() { # IMAGE RP DISK: IMAGE converts to DISK at RP
  qemu-img convert -O raw "$1" "$WORK/conv.raw" || fail "qemu-img convert $1"
  cmp "$WORK/conv.raw" "$WORK/$3-at-$2.raw" || fail "$1 is not $3 at $2"
}

step "rp1 full as tar.zst, rp2 from rp1 as tar.xz, rp3 from rp1 as tar"
D1=$(new_dir day1) D2=$(new_dir day2) D3=$(new_dir day3)
export_rp "$RPS/rp1" "$D1" Format=tar.zst
export_rp "$RPS/rp2" "$D2" Format=tar.xz BaseReferencePoint=rp1
export_rp "$RPS/rp3" "$D3" Format=tar BaseReferencePoint=rp1
unpack "$D1" tar.zst
unpack "$D2" tar.xz
unpack "$D3" tar

step "the differential images are qcow2 overlays naming the base's raw image"
assert_eq "$(qemu-img info --output=json "$D2/vm1/disks/sda.qcow2" |
  sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p')" \
  "../../../day1/vm1/disks/sda.raw" "backing file of rp2's sda"
assert_eq "$(backing_format_of "$D3/vm1/disks/sdb.qcow2")" raw "backing format"
grep -q '^ExportType = differential$' "$D3/vm1/referencepoint" || fail "ExportType"

step "qemu-img convert of the newest image gives the disk at its reference point"
for d in sda sdb; do
  restored "$D1/vm1/disks/$d.raw" rp1 $d
  restored "$D2/vm1/disks/$d.qcow2" rp2 $d
  restored "$D3/vm1/disks/$d.qcow2" rp3 $d
done

step "a differential stream: overlay without backing file; rebase -u, convert"
echo rp2 >"$RPS/rp3/ExportSettingData/BaseReferencePoint"
S=$(new_dir stream)
cat "$RPS/rp3/export.tar.gz" >"$S/rp3.tar.gz" || fail "cat of the stream failed"
mkdir "$S/x"
tar -xSf "$S/rp3.tar.gz" -C "$S/x"
(cd "$S/x/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS of the stream"
for d in sda sdb; do
  img=$S/x/vm1/disks/$d.qcow2
  assert_eq "$(backing_of "$img")" "" "backing file of a streamed differential"
  qemu-img rebase -u -b "$D2/vm1/disks/$d.qcow2" -F qcow2 "$img"
  restored "$img" rp3 $d
done
ls "$STORE/run" | grep -v '\.nbd$' | grep -v '^qemu-nbd.log$' && fail "staging left in the store"

umount_rpfs "$MNT"
pass
