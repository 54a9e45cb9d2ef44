#!/bin/bash
# Reading a point-in-time disk through the mount: `cp --sparse=always` of
# MNT/vm1/referencepoints/rp1/disks/sda (8 GiB, 4 GiB of data in 64 MiB
# chunks every other 128 MiB) against `nbdcopy` of the same content from
# rpfs's NBD export rp.1.0 into a local file.  Each runs three times,
# alternating, each after a sync; the best time counts.  (With the page
# cache dropped before each run both take longer and cp far longer: see
# docs/performance.md.)  Prints times, throughput and the throughput ratio
# rpfs/nbdcopy (= nbdcopy time / cp time), and checks that both copies hold
# the same data and are sparse.  Then it times the halves of cp's work apart
# (reads through the mount; writes of a local cp) to show what dominates.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SIZE_GIB=${BENCH_SIZE_GIB:-8}
DATA_BYTES=$((SIZE_GIB * 512 * 1048576))
echo "== cp-sparse: cp --sparse=always from the mount vs nbdcopy, ${SIZE_GIB} GiB disk with $((SIZE_GIB / 2)) GiB of data"
new_system vm1 "${SIZE_GIB}G"
t0=$(now)
fill_half "$IMG" "$SIZE_GIB"
say "filled the image with qemu-io in $(secs "$t0" "$(now)") s"
mount_rpfs
mkdir "$MNT/vm1/referencepoints/rp1"
SRC=$MNT/vm1/referencepoints/rp1/disks/sda
URI="nbd+unix:///rp.1.0?socket=$STORE/run/0.nbd"
CP_OUT=$BWORK/cp.raw
NC_OUT=$BWORK/nbdcopy.raw

best_cp="" best_nc=""
for run in 1 2 3; do
  rm -f "$CP_OUT"
  settle
  t0=$(now)
  cp --sparse=always "$SRC" "$CP_OUT"
  t1=$(now)
  t=$(secs "$t0" "$t1")
  say "run $run: cp --sparse=always: $t s"
  best_cp=$(min "${best_cp:-$t}" "$t")

  rm -f "$NC_OUT"
  settle
  t0=$(now)
  nbdcopy "$URI" "$NC_OUT"
  t1=$(now)
  t=$(secs "$t0" "$t1")
  say "run $run: nbdcopy:             $t s"
  best_nc=$(min "${best_nc:-$t}" "$t")
done
tput() { awk -v b="$DATA_BYTES" -v t="$1" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
say "best: cp $best_cp s ($(tput "$best_cp") MiB/s of data), nbdcopy $best_nc s ($(tput "$best_nc") MiB/s of data)"
say "allocated: cp output $(mib "$(du_bytes "$CP_OUT")") MiB, nbdcopy output $(mib "$(du_bytes "$NC_OUT")") MiB (data: $(mib "$DATA_BYTES") MiB)"
if qemu-img compare -q -f raw -F raw "$CP_OUT" "$NC_OUT"; then CMP=OK; else CMP=DIFFER; fi
say "qemu-img compare cp output vs nbdcopy output: $CMP"
CP_DU=$(du_bytes "$CP_OUT")

# Where cp's time goes: cp is one thread that alternates a 128 KiB read
# (with --sparse=always cp sizes its buffer for the destination; each read
# is one FUSE request, which rpfs answers from its read-ahead, prefetch.c)
# and a 128 KiB write into the page cache.  Time the two halves apart.
t0=$(now)
for ((off = 0; off < SIZE_GIB * 1024; off += 128)); do # the data chunks
  dd if="$SRC" of=/dev/null bs=128K skip=$((off * 8)) count=512 status=none
done
t1=$(now)
T_READ=$(secs "$t0" "$t1")
say "reads alone: the $((SIZE_GIB / 2)) GiB of data through the mount in 128 KiB reads (dd to /dev/null): $T_READ s"
t0=$(now)
for ((off = 0; off < SIZE_GIB * 1024; off += 128)); do
  dd if="$SRC" of=/dev/null bs=1M skip=$off count=64 status=none
done
t1=$(now)
say "the same in 1 MiB reads: $(secs "$t0" "$t1") s"
rm -f "$CP_OUT"
settle
t0=$(now)
cp --sparse=always "$NC_OUT" "$CP_OUT"
t1=$(now)
T_LOCAL=$(secs "$t0" "$t1")
say "writes alone: cp --sparse=always of the local nbdcopy output (page cache warm) to a new file: $T_LOCAL s"
t0=$(now)
nbdcopy "$URI" null:
t1=$(now)
say "nbdcopy to null (its reads alone): $(secs "$t0" "$t1") s"

result "cp --sparse=always, best of 3 (s)" "$best_cp"
result "nbdcopy, best of 3 (s)" "$best_nc"
result "throughput ratio rpfs/nbdcopy" "$(ratio "$best_nc" "$best_cp")" ">= 0.7"
result "cp output allocated" "$(mib "$CP_DU") MiB" "$(mib "$DATA_BYTES") MiB"
result "cp output == nbdcopy output" "$CMP" "OK"
umount_rpfs
