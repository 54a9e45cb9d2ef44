#!/bin/bash
# Reading a point-in-time disk through the mount: `cp --sparse=always` of
# MNT/vm1/referencepoints/rp1/disks/sda (8 GiB, 4 GiB of data in 64 MiB
# chunks every other 128 MiB) against `nbdcopy` of the same content from
# rpfs's NBD export rp.1.0 into a local file.  Each runs twice, alternating;
# the best time counts.  Prints times, throughput and the throughput ratio
# rpfs/nbdcopy (= nbdcopy time / cp time), and checks that both copies hold
# the same data and are sparse.
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
for run in 1 2; do
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

result "cp --sparse=always, best of 2 (s)" "$best_cp"
result "nbdcopy, best of 2 (s)" "$best_nc"
result "throughput ratio rpfs/nbdcopy" "$(ratio "$best_nc" "$best_cp")" ">= 0.7"
result "cp output allocated" "$(mib "$(du_bytes "$CP_OUT")") MiB" "$(mib "$DATA_BYTES") MiB"
result "cp output == nbdcopy output" "$CMP" "OK"
umount_rpfs
