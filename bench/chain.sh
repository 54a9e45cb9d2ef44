#!/bin/bash
# Long chains of reference points on one disk (issue 10 §3).  For N in
# RPFS_BENCH_CHAIN (default "1 10 20 50 100"): a fresh 1 GiB disk with
# 256 MiB of data, N reference points of which the newest min(N, 20) are log
# based (hold associated data) and the others RCT based
# (ReferencePointType=2), with 4 MiB written between consecutive ones.
# Prints per N: the latency of creating the N-th reference point (and the
# mean over all N), of destroying the one in the middle (rmdir), and the
# throughput of writing 128 MiB over the disk's data through the daemon's
# NBD export cur.0 (what the mount's disks/sda serves) relative to the same
# write with no reference point.  Then the time of a full export of the
# oldest reference point with data (read through every newer one's scratch:
# design.md, "The fleecing chain") against one of the newest.  Targets
# (issue 10): create < 100 ms, destroy in the middle < 1 s, write ratio
# >= 0.5 at N = 100.  Figures only; nothing is asserted.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

NS=${RPFS_BENCH_CHAIN:-1 10 20 50 100}
DATA_MAX=20
WRITE_MB=128

# export_secs RP: seconds of a full export of RP into a new directory.
export_secs() {
  local out=$BWORK/export-$1 t0 t1
  rm -rf "$out"
  mkdir -p "$out"
  settle
  t0=$(now)
  start_export "$RPS/$1" "$out"
  wait_job "$JOB"
  t1=$(now)
  rm -rf "$out"
  secs "$t0" "$t1"
}

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

# write_speed: MiB/s of writing WRITE_MB over the first half of the data.
write_speed() {
  local t0 t1 pat=$1
  settle
  t0=$(now)
  qemu-io -f raw -c "write -P $pat 0 ${WRITE_MB}M" \
    "nbd+unix:///cur.0?socket=$STORE/run/0.nbd" >/dev/null
  settle
  t1=$(now)
  awk -v a="$t0" -v b="$t1" -v m="$WRITE_MB" 'BEGIN { printf "%.1f", m / (b - a) }'
}

fresh() {
  umount_rpfs
  rm -rf "$BWORK/store" "$BWORK/images"
  new_system vm1 1G
  qemu-io -f qcow2 -c "write -P 0x5a 0 256M" "$IMG" >/dev/null
  mount_rpfs
  RPS=$MNT/vm1/referencepoints
}

_bsleep 0 # wait_job's sleeping FIFO, made here for the $(export_secs) subshells
echo "== chain: N reference points on one disk, min(N, $DATA_MAX) with data"
fresh
BASE=$(write_speed 0x11)
say "write with no reference point: $BASE MiB/s"
printf '   %5s %6s %12s %12s %14s %10s %12s %16s\n' N data "create N-th" "create mean" "destroy mid" "write" "write ratio" "export old/new"
for N in $NS; do
  fresh
  D=$((N < DATA_MAX ? N : DATA_MAX))
  sum=0 last=0
  for ((k = 1; k <= N; k++)); do
    t0=$(now)
    if ((k > N - D)); then
      mkdir "$RPS/rp$k"
    else
      printf 'rp%d\nReferencePointType=2\n' "$k" >"$MNT/vm1/CreateReferencePoint"
    fi
    t1=$(now)
    last=$(ms "$t0" "$t1")
    sum=$((sum + last))
    qemu-io -f raw -c "write -P 0x$(printf %02x $((0x20 + k % 200))) $(((k * 4) % 1000))M 4M" \
      "nbd+unix:///cur.0?socket=$STORE/run/0.nbd" >/dev/null
  done
  W=$(write_speed 0x33)
  EOLD=$(export_secs "rp$((N - D + 1))")
  ENEW=$(export_secs "rp$N")
  mid=$((N / 2 + 1))
  t0=$(now)
  rmdir "$RPS/rp$mid"
  t1=$(now)
  DEL=$(ms "$t0" "$t1")
  printf '   %5s %6s %9s ms %9s ms %11s ms %5s MiB/s %12s %6s/%5s s\n' "$N" \
    "$D" "$last" "$((sum / N))" "$DEL" "$W" "$(ratio "$W" "$BASE")" \
    "$EOLD" "$ENEW"
  result "N=$N: create N-th (ms)" "$last" "< 100"
  result "N=$N: destroy in the middle (ms)" "$DEL" "< 1000"
  result "N=$N: write ratio" "$(ratio "$W" "$BASE")" ">= 0.5"
  result "N=$N: export of the oldest with data / of the newest" \
    "$(ratio "$EOLD" "$ENEW")" "(no target)"
done
umount_rpfs
