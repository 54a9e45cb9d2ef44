#!/bin/bash
# Full export of an empty 64 GiB disk: an export that has nothing to copy
# should cost only its fixed overhead (checks, qemu-img create, starting
# qemu-nbd, block status over 64 GiB, sha256sum of a tiny image, sync and
# rename).  Prints the time and the size of the export on disk (du).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

echo "== export-empty: full export of an empty 64 GiB qcow2"
new_system vm1 64G
mount_rpfs
RP=$MNT/vm1/referencepoints
mkdir "$RP/rp1"
OUT=$BWORK/out
settle
t0=$(now)
start_export "$RP/rp1" "$OUT"
wait_job "$JOB"
t1=$(now)
T=$(secs "$t0" "$t1")
say "full export: $T s (job ElapsedTime $(interval_secs "$(cat "$MNT/jobs/$JOB/ElapsedTime")") s)"
for c in "${!PHASE_FIRST[@]}"; do
  say "  $c seen from +$(secs "$t0" "${PHASE_FIRST[$c]}") s to +$(secs "$t0" "${PHASE_LAST[$c]}") s"
done
IMGX=$OUT/vm1/disks/sda.qcow2
DU=$(du_bytes "$OUT/vm1")
say "export: $(du -sh "$OUT/vm1" | cut -f1) on disk in all; image $(stat -c %s "$IMGX") bytes, virtual size $(qemu-img info --output=json "$IMGX" | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p')"

# For scale: qemu-img convert of the same (empty) point-in-time disk.
settle
t2=$(now)
qemu-img convert -f raw -O qcow2 "nbd+unix:///rp.1.0?socket=$STORE/run/0.nbd" "$BWORK/convert.qcow2"
t3=$(now)
say "qemu-img convert of the same disk from NBD: $(secs "$t2" "$t3") s"

result "full export, empty 64 GiB (s)" "$T" "< 1 s"
result "export size on disk (du)" "$(awk -v b="$DU" 'BEGIN { printf "%.0f KiB", b / 1024 }')" "< 1 MiB"
umount_rpfs
