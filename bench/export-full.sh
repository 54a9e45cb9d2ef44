#!/bin/bash
# Full export, and (same run, same data) differential export.
#
# export-full: an 8 GiB qcow2 holding 4 GiB of non-zero data (64 MiB chunks
#   every other 128 MiB).  mkdir rp1, then, alternating, twice: a full export
#   through the mount, and `qemu-img convert -O qcow2` of the same
#   point-in-time content read from rpfs's NBD export rp.1.0.  The best time
#   of each counts.  Prints both and rpfs/qemu-img, rpfs's peak RSS (VmHWM),
#   whether both images hold the same data (qemu-img compare) and the export
#   verifies (sha256sum -c), and how the export's time splits into its
#   pieces (create, copy, hash, sync + rename), as told by the helper
#   processes rpfs runs.
# export-diff: then 1% of the data (656 x 64 KiB = 41 MiB, spread evenly
#   across the whole disk, so about half lands where there was no data) is
#   rewritten through MNT/vm1/disks/sda with dd conv=notrunc, mkdir rp2,
#   differential export with BaseReferencePoint=rp1.  Prints its time
#   against the full export's, and the size of the differential image;
#   checks that it (over its backing file, the full export) equals rp2.
#
# bench/export-diff.sh runs this script (a differential export needs the
# full one first).  Knobs: BENCH_NO_DIFF=1 stops after the full export;
# BENCH_RUNS (default 2) rpfs/qemu-img pairs; BENCH_SIZE_GIB (default 8).
BENCH_NAME=export-full
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

SIZE_GIB=${BENCH_SIZE_GIB:-8}
echo "== export-full: ${SIZE_GIB} GiB qcow2, $((SIZE_GIB / 2)) GiB of data"
new_system vm1 "${SIZE_GIB}G"
t0=$(now)
fill_half "$IMG" "$SIZE_GIB"
t1=$(now)
say "filled the image with qemu-io in $(secs "$t0" "$t1") s ($(mib "$(du_bytes "$IMG")") MiB allocated)"
DATA_BYTES=$((SIZE_GIB * 512 * 1048576))

mount_rpfs
RP=$MNT/vm1/referencepoints
mkdir "$RP/rp1"
say "rpfs VmHWM after mount and mkdir rp1: $(hwm "$RPFS_PID") KiB"
SOCK=$STORE/run/0.nbd
URI1="nbd+unix:///rp.1.0?socket=$SOCK"

QSD=$(qsd_pid)
RUNS=${BENCH_RUNS:-2}
phase() { # NAME: "first last" of a helper seen while polling, or empty
  [[ -n ${PHASE_FIRST[$1]:-} ]] && echo "${PHASE_FIRST[$1]} ${PHASE_LAST[$1]}"
}

# rpfs_export N: full export of rp1 into $BWORK/out-full.N; sets T_RPFS_N,
# SHA_SECS (the hash's share, if it can be told) and SHA_WHAT.
rpfs_export() {
  local out=$BWORK/out-full.$1 c_own0 c_kids0 c_own1 c_kids1 q0 q1 t0 t1 nf nl sf sl
  settle
  read -r c_own0 c_kids0 <<<"$(cpu "$RPFS_PID")"
  read -r q0 _ <<<"$(cpu "$QSD")"
  t0=$(now)
  start_export "$RP/rp1" "$out"
  wait_job "$JOB"
  t1=$(now)
  T_RPFS_N=$(secs "$t0" "$t1")
  read -r c_own1 c_kids1 <<<"$(cpu "$RPFS_PID")"
  read -r q1 _ <<<"$(cpu "$QSD")"
  say "run $1: rpfs full export: $T_RPFS_N s ($(awk -v b="$DATA_BYTES" -v t="$T_RPFS_N" 'BEGIN { printf "%.0f", b / 1048576 / t }') MiB/s of data); job ElapsedTime $(interval_secs "$(cat "$MNT/jobs/$JOB/ElapsedTime")") s"
  say "  CPU seconds: rpfs $(secs "$c_own0" "$c_own1"), its helper processes (qemu-img create, qemu-nbd) $(secs "$c_kids0" "$c_kids1"), qemu-storage-daemon $(secs "$q0" "$q1")"
  # Pieces of the export, from the helper processes seen while polling.
  SHA_SECS="" SHA_WHAT=""
  if [[ -n $(phase qemu-nbd) ]]; then
    read -r nf nl <<<"$(phase qemu-nbd)"
    say "  submit -> qemu-nbd (target) started:  $(secs "$t0" "$nf") s  (checks, qemu-img create, block status plan)"
    say "  qemu-nbd running (the copy):          ~$(secs "$nf" "$nl") s"
  fi
  if [[ -n $(phase qemu-nbd) ]]; then
    # After the copy: the image's SHA-256 beside its fdatasync, then the
    # directories' fsync, chown and the rename.
    SHA_SECS=$(secs "$nl" "$JOB_DONE")
    SHA_WHAT="after the copy: SHA-256 + sync + rename (s)"
    say "  qemu-nbd gone -> job Completed:        $SHA_SECS s  (SHA-256 beside fdatasync, chown, rename)"
  fi
}

# convert_run N: qemu-img convert of rp1 from NBD into $BWORK/convert.N.qcow2;
# sets T_CONV_N.
convert_run() {
  local conv=$BWORK/convert.$1.qcow2 q0 q1 t0 t1 t2
  settle
  read -r q0 _ <<<"$(cpu "$QSD")"
  TIMEFORMAT='%U %S'
  t0=$(now)
  { time qemu-img convert -f raw -O qcow2 "$URI1" "$conv"; } 2>"$BWORK/convert.time"
  t1=$(now)
  T_CONV_N=$(secs "$t0" "$t1")
  read -r q1 _ <<<"$(cpu "$QSD")"
  sync
  t2=$(now)
  say "run $1: qemu-img convert -O qcow2 from NBD rp.1.0: $T_CONV_N s (a sync after it: $(secs "$t1" "$t2") s more)"
  say "  CPU seconds: qemu-img $(awk '{ printf "%.2f", $1 + $2 }' "$BWORK/convert.time"), qemu-storage-daemon $(secs "$q0" "$q1")"
}

# Alternate rpfs and qemu-img; the best time of each counts.
T_RPFS="" T_CONV="" BEST_SHA="" BEST_SHA_WHAT=""
for ((run = 1; run <= RUNS; run++)); do
  # Only the newest export of rp1 stays (the differential export's base);
  # the previous round's files go first, so each round starts alike.
  ((run == 1)) || rm -rf "$BWORK/out-full.$((run - 1))" "$BWORK/convert.$((run - 1)).qcow2"
  rpfs_export "$run"
  if [[ -z $T_RPFS ]] || awk -v a="$T_RPFS_N" -v b="$T_RPFS" 'BEGIN { exit !(a < b) }'; then
    T_RPFS=$T_RPFS_N BEST_SHA=$SHA_SECS BEST_SHA_WHAT=$SHA_WHAT
  fi
  convert_run "$run"
  T_CONV=$(min "${T_CONV:-$T_CONV_N}" "$T_CONV_N")
done
HWM_KIB=$(hwm "$RPFS_PID")
QSD_HWM=${QSD:+$(hwm "$QSD")}
IMG1=$BWORK/out-full.$RUNS/vm1/disks/sda.qcow2
CONV=$BWORK/convert.$RUNS.qcow2
say "best of $RUNS: rpfs $T_RPFS s, qemu-img convert $T_CONV s"
say "exported image: $(mib "$(stat -c %s "$IMG1")") MiB file, $(mib "$(du_bytes "$IMG1")") MiB allocated; convert output: $(mib "$(du_bytes "$CONV")") MiB allocated"

# The export checks itself; the time of that is coreutils' SHA-256 over the
# whole export (image in the page cache), for reference.
t2=$(now)
(cd "$BWORK/out-full.$RUNS/vm1" && sha256sum --quiet -c SHA256SUMS) && SUMS=OK || SUMS=FAILED
t3=$(now)
say "sha256sum -c SHA256SUMS in the export: $SUMS, in $(secs "$t2" "$t3") s (coreutils SHA-256, page cache warm)"
if command -v openssl >/dev/null; then
  t2=$(now)
  openssl dgst -sha256 -r "$IMG1" >/dev/null
  t3=$(now)
  say "for reference, openssl dgst -sha256 of the same (SHA extensions where the CPU has them): $(secs "$t2" "$t3") s"
fi

if qemu-img compare -q "$IMG1" "$CONV"; then CMP=OK; else CMP=DIFFER; fi
say "qemu-img compare export vs convert: $CMP"

result "rpfs full export, best of $RUNS (s)" "$T_RPFS"
result "qemu-img convert, best of $RUNS (s)" "$T_CONV"
result "ratio rpfs/qemu-img" "$(ratio "$T_RPFS" "$T_CONV")" "<= 1.0"
[[ -z $BEST_SHA ]] || result "$BEST_SHA_WHAT" "$BEST_SHA ($(awk -v a="$BEST_SHA" -v b="$T_RPFS" 'BEGIN { printf "%.0f", 100 * a / b }')%)"
result "rpfs peak RSS (VmHWM)" "$(mib $((HWM_KIB * 1024))) MiB" "< 100 MiB"
[[ -z $QSD_HWM ]] || result "qemu-storage-daemon VmHWM" "$(mib $((QSD_HWM * 1024))) MiB"
result "export == convert (qemu-img compare)" "$CMP" "OK"
result "sha256sum -c SHA256SUMS" "$SUMS" "OK"
rm -f "$CONV"

if [[ ${BENCH_NO_DIFF:-} == 1 ]]; then
  umount_rpfs
  exit 0
fi

# ---- differential export
RESULT_NAME=export-diff
echo "== export-diff: rewrite 1% of the data across the disk, mkdir rp2, export with BaseReferencePoint=rp1"
PIECE=65536
PIECES=$(((DATA_BYTES + 100 * PIECE - 1) / (100 * PIECE))) # 1% of the data
STRIDE=$((SIZE_GIB * 1024 * 1024 * 1024 / PIECES / PIECE * PIECE))
head -c $PIECE /dev/urandom >"$BWORK/piece"
t0=$(now)
for ((i = 0; i < PIECES; i++)); do
  dd if="$BWORK/piece" of="$MNT/vm1/disks/sda" bs=$PIECE seek=$((i * STRIDE / PIECE)) \
    conv=notrunc status=none
done
t1=$(now)
say "wrote $PIECES x 64 KiB ($(mib $((PIECES * PIECE))) MiB, every $(mib $STRIDE) MiB) through the mount in $(secs "$t0" "$t1") s"
mkdir "$RP/rp2"
OUT2=$BWORK/out-diff
settle
t0=$(now)
start_export "$RP/rp2" "$OUT2"$'\n'"BaseReferencePoint=rp1"
wait_job "$JOB"
t1=$(now)
T_DIFF=$(secs "$t0" "$t1")
IMG2=$OUT2/vm1/disks/sda.qcow2
say "differential export: $T_DIFF s (full: $T_RPFS s; qemu-img convert of the whole disk: $T_CONV s, diff/convert $(ratio "$T_DIFF" "$T_CONV"))"
if [[ -n $(phase qemu-nbd) ]]; then
  read -r nf nl <<<"$(phase qemu-nbd)"
  say "  submit -> qemu-nbd started: $(secs "$t0" "$nf") s; qemu-nbd ran ~$(secs "$nf" "$nl") s; qemu-nbd gone -> Completed $(secs "$nl" "$JOB_DONE") s"
fi
SZ2=$(stat -c %s "$IMG2")
DU2=$(du_bytes "$IMG2")
say "differential image: $(mib "$SZ2") MiB file, $(mib "$DU2") MiB allocated, backing file: $(qemu-img info --output=json "$IMG2" | sed -n 's/^ *"backing-filename": "\(.*\)",*$/\1/p')"
if qemu-img compare -q "$IMG2" "nbd+unix:///rp.2.0?socket=$SOCK"; then CMP2=OK; else CMP2=DIFFER; fi
say "qemu-img compare differential image (over the full one) vs rp2: $CMP2"

result "differential export (s)" "$T_DIFF"
result "ratio diff/full" "$(ratio "$T_DIFF" "$T_RPFS")" "<= 0.05"
result "differential image size" "$(mib "$SZ2") MiB ($(mib "$DU2") MiB on disk)"
result "diff image + base == rp2" "$CMP2" "OK"
umount_rpfs
