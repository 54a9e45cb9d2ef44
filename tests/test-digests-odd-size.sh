#!/bin/bash
# A full export's digest table, hashed from the finished image (imagehash.c:
# qemu-img map, then the data where the image stores it), on a disk whose
# size is not a multiple of the 64 KiB block: its last block is 6 KiB.
# Data in the last block, in the block before, in a cluster written only in
# part, a zeroed range inside data, and holes.  VerifyExport, which hashes
# what the image restores to through qemu-nbd, agrees with the table; a
# byte flipped in the short last block of a copy is found, naming block 81.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SIZE=$((5 * 1024 * 1024 + 70 * 1024))   # 81 blocks of 64 KiB + 6 KiB
new_store
IMG=$IMAGES/odd.qcow2
qemu-img create -q -f qcow2 "$IMG" "$SIZE"
qemu-io -f qcow2 -c "write -P 0x21 0 200k" -c "write -z 64k 64k" \
  -c "write -P 0x22 3000k 4k" -c "write -P 0x23 $((SIZE - 70 * 1024)) 70k" \
  "$IMG" >/dev/null || fail "qemu-io could not write $IMG"
raw_of "$IMG" "$WORK/img.raw"    # before rpfs's storage daemon holds it
echo "disk sda = $IMG" >"$STORE/systems/vm1.conf"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
verify() {
  call_method "$RPS/rp1/VerifyExport" "$1"$'\n'
  assert_eq "$RV" 4096 "ReturnValue of VerifyExport ($DESC)"
  wait_job_done "$MNT/jobs/$JOB"
}

step "full export of the odd-sized disk; the table covers every block"
mkdir "$RPS/rp1"
E1=$(new_dir full)
export_rp "$RPS/rp1" "$E1" KeepAssociatedData=false
(cd "$E1/vm1" && sha256sum -c --quiet SHA256SUMS) || fail "SHA256SUMS does not check"
raw_of "$E1/vm1/disks/sda.qcow2" "$WORK/exp.raw"
cmp "$WORK/exp.raw" "$WORK/img.raw" || fail "the export is not the disk"

step "VerifyExport agrees with the table (no associated data: the image only)"
verify "$E1"
assert_job_completed "$JOB"

step "a byte flipped in the short last block of a copy: block 81 named"
B=$(new_dir bad)
cp -a "$E1/vm1" "$B/"
COPY=$B/vm1/disks/sda.qcow2
GUEST=$((SIZE - 100))
HOST=$(qemu-img map --output=json "$COPY" | tr -d ' ' | tr '}' '\n' |
  sed -n 's/.*"start":\([0-9]*\),"length":\([0-9]*\),.*"data":true.*"offset":\([0-9]*\).*/\1 \2 \3/p' |
  awk -v g="$GUEST" '$1 <= g && g < $1 + $2 { print $3 + g - $1 }')
[[ -n $HOST ]] || fail "no host offset for guest offset $GUEST in $COPY"
printf '\x5a' | dd of="$COPY" bs=1 seek="$HOST" conv=notrunc status=none
verify "$B"
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "^disk sda: block 81 " \
  "the failure names the short last block"
umount_rpfs "$MNT"
pass
