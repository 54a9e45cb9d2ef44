#!/bin/bash
# Export after a crash: a digest-based differential against (a) the
# bitmap-based differential of the same change without the crash and (b) a
# full export; and the full export with digest tables against one without.
#
# An 8 GiB qcow2 with 4 GiB of data (bench/lib.sh fill_half).  mkdir rp1,
# full export (timed, with tables).  1 % of the data is rewritten through
# the mount as in export-diff (656 x 64 KiB spread over the disk); mkdir
# rp2; bitmap-based differential rp2 from rp1 (timed, size).  Then kill -9
# of the qemu-storage-daemon and rpfs, mount again: rp1's bitmap is gone,
# its ChangeTracking reads "digests: ...".  mkdir rp3 (the same content as
# rp2: nothing wrote since) and export it from rp1, which compares digests
# (timed, size); qemu-img compare of both differential chains.  Last,
# alternating three times, full exports of rp3 by this rpfs and by a build
# without digest tables (RPFS_BASE, default: the commit before them, built
# from `git archive` into the work directory); the best of each counts.
#
# Targets (issue 13): digest-based time <= 0.6 x the full export; its image
# <= 1.2 x the bitmap-based one; full export with tables <= 1.1 x without.
# Knobs: BENCH_SIZE_GIB (default 8), RPFS_BASE, BASE_COMMIT (d9234fe).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SIZE_GIB=${BENCH_SIZE_GIB:-8}
DATA_BYTES=$((SIZE_GIB * 512 * 1048576))

# base_binary: rpfs without digest tables.
base_binary() {
  if [[ -n ${RPFS_BASE:-} ]]; then
    echo "$RPFS_BASE"
    return
  fi
  local src=$BWORK/base-src
  mkdir -p "$src"
  git -C "$BREPO" archive "${BASE_COMMIT:-d9234fe}" | tar -x -C "$src"
  make -C "$src" -j2 rpfs >"$BWORK/base-build.log" 2>&1 ||
    die "building the base rpfs failed (see $BWORK/base-build.log)"
  echo "$src/rpfs"
}

# export_timed RP OUT [LINE]: export, wait; sets T (seconds) and C (CPU
# seconds of rpfs, the helpers it waited for, and qemu-storage-daemon):
# on a shared machine the CPU time says more than the wall clock.
export_timed() {
  local payload=$2 t0 t1 o0 k0 o1 k1 q0 q1 qsd
  [[ -z ${3:-} ]] || payload+=$'\n'$3
  settle
  qsd=$(qsd_pid)
  read -r o0 k0 <<<"$(cpu "$RPFS_PID")"
  read -r q0 _ <<<"$(cpu "$qsd")"
  t0=$(now)
  start_export "$MNT/vm1/referencepoints/$1" "$payload"
  wait_job "$JOB"
  t1=$(now)
  read -r o1 k1 <<<"$(cpu "$RPFS_PID")"
  read -r q1 _ <<<"$(cpu "$qsd")"
  T=$(secs "$t0" "$t1")
  C=$(awk -v a="$o1" -v b="$o0" -v c="$k1" -v d="$k0" -v e="$q1" -v f="$q0" \
    'BEGIN { printf "%.2f", a - b + c - d + e - f }')
  say "  CPU: rpfs $(secs "$o0" "$o1") s, its helpers $(secs "$k0" "$k1") s, qemu-storage-daemon $(secs "$q0" "$q1") s; load average $(cut -d' ' -f1 /proc/loadavg)"
}

echo "== export-after-crash: ${SIZE_GIB} GiB qcow2, $((SIZE_GIB / 2)) GiB of data"
BASE_RPFS=$(base_binary)
new_system vm1 "${SIZE_GIB}G"
fill_half "$IMG" "$SIZE_GIB"
mount_rpfs
RP=$MNT/vm1/referencepoints
mkdir "$RP/rp1"
export_timed rp1 "$BWORK/full1"
T_FULL1=$T C_FULL1=$C
say "full export of rp1 (with tables): $T_FULL1 s"

PIECE=65536
PIECES=$(((DATA_BYTES + 100 * PIECE - 1) / (100 * PIECE)))
STRIDE=$((SIZE_GIB * 1024 * 1024 * 1024 / PIECES / PIECE * PIECE))
head -c $PIECE /dev/urandom >"$BWORK/piece"
for ((i = 0; i < PIECES; i++)); do
  dd if="$BWORK/piece" of="$MNT/vm1/disks/sda" bs=$PIECE seek=$((i * STRIDE / PIECE)) \
    conv=notrunc status=none
done
say "rewrote $PIECES x 64 KiB ($(mib $((PIECES * PIECE))) MiB) across the disk"
mkdir "$RP/rp2"
export_timed rp2 "$BWORK/bitmap" "BaseReferencePoint=rp1"
T_BITMAP=$T
S_BITMAP=$(stat -c %s "$BWORK/bitmap/vm1/disks/sda.qcow2")
say "bitmap-based differential rp2 from rp1: $T_BITMAP s, $(mib "$S_BITMAP") MiB"

echo "== kill -9 qemu-storage-daemon and rpfs, mount again"
QSD=$(qsd_pid)
kill -KILL "$QSD" "$RPFS_PID"
wait "$RPFS_PID" 2>/dev/null || true
RPFS_PID=""
fusermount3 -u -z "$MNT" 2>/dev/null || true
mount_rpfs
say "rp1 ChangeTracking: $(cat "$RP/rp1/ChangeTracking")"
mkdir "$RP/rp3"
export_timed rp3 "$BWORK/digest" "BaseReferencePoint=rp1"
T_DIGEST=$T C_DIGEST=$C
S_DIGEST=$(stat -c %s "$BWORK/digest/vm1/disks/sda.qcow2")
say "digest-based differential rp3 from rp1: $T_DIGEST s, $(mib "$S_DIGEST") MiB ($(grep DifferentialBy "$BWORK/digest/vm1/referencepoint"))"
if qemu-img compare -q "$BWORK/digest/vm1/disks/sda.qcow2" \
  "$BWORK/bitmap/vm1/disks/sda.qcow2"; then CMP=OK; else CMP=DIFFER; fi
say "qemu-img compare digest-based vs bitmap-based chain: $CMP"

echo "== full export of rp3, with tables (this rpfs) and without ($BASE_RPFS), alternating: runs ${BENCH_RUNS_LIST:-1 2 3}"
BEST_WITH="" BEST_WITHOUT="" CW=$C_FULL1 CWO=""
for run in ${BENCH_RUNS_LIST:-1 2 3}; do
  export_timed rp3 "$BWORK/with.$run"
  BEST_WITH=$(min "${BEST_WITH:-$T}" "$T")
  CW=$(min "$CW" "$C")
  say "run $run: with tables $T s"
  rm -rf "$BWORK/with.$run"
  umount_rpfs
  SAVED=$RPFS
  RPFS=$BASE_RPFS
  mount_rpfs
  export_timed rp3 "$BWORK/without.$run"
  BEST_WITHOUT=$(min "${BEST_WITHOUT:-$T}" "$T")
  CWO=$(min "${CWO:-$C}" "$C")
  say "run $run: without tables $T s"
  rm -rf "$BWORK/without.$run"
  umount_rpfs
  RPFS=$SAVED
  mount_rpfs
done
umount_rpfs

result "full export with tables, best of 4 (s)" "$(min "$BEST_WITH" "$T_FULL1")"
result "full export without tables, best of 3 (s)" "$BEST_WITHOUT"
result "ratio with/without tables" "$(ratio "$(min "$BEST_WITH" "$T_FULL1")" "$BEST_WITHOUT")" "<= 1.1"
result "CPU s with / without tables (least of each)" "$CW / $CWO = $(ratio "$CW" "$CWO")"
result "bitmap-based differential (s, MiB)" "$T_BITMAP s, $(mib "$S_BITMAP") MiB"
result "digest-based differential (s, MiB)" "$T_DIGEST s, $(mib "$S_DIGEST") MiB"
result "CPU s digest-based / full export" "$C_DIGEST / $CW = $(ratio "$C_DIGEST" "$CW")"
result "ratio digest-based time / full export" "$(ratio "$T_DIGEST" "$(min "$BEST_WITH" "$T_FULL1")")" "<= 0.6"
result "ratio digest-based size / bitmap-based" "$(ratio "$S_DIGEST" "$S_BITMAP")" "<= 1.2"
result "digest chain == bitmap chain (qemu-img compare)" "$CMP" "OK"
