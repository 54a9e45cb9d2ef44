#!/bin/bash
# Archive exports and streams against the directory export, on a disk that
# holds a real file system so that compression sees real data.
#
# The disk: an 8 GiB qcow2 made from `mkfs.ext4 -d` of a copy of parts of
# /usr (about BENCH_DATA_MIB MiB, default 2048: /usr/share, /usr/bin,
# /usr/sbin, /usr/include, then /usr/lib until the budget is used).  mkdir
# rp1, then one run each:
#   qcow2      ExportReferencePoint, Format=qcow2 (the directory export)
#   tar        Format=tar
#   tar.zst    Format=tar.zst (default level)
#   stream     cat referencepoints/rp1/export.tar.zst > file
#   reference  qemu-img convert -O raw of rp1 (rpfs's NBD export rp.SEQ.0,
#              SEQ rp1's sequence: 1, or above the bitmaps a reused disk
#              carries),
#              then tar --zstd -cSf of that raw file: what a user scripts
# The definition has export-nice = 0 (BENCH_EXPORT_NICE; see below).
# BENCH_ROUNDS rounds of the four (default 2), the best time of each.
# Prints time and output size of each, the ratios the targets name, and
# rpfs's peak RSS (VmHWM) over the whole run.  Targets: tar <= 1.1 x qcow2; tar.zst and the
# stream <= 1.5 x qcow2 and no larger than the reference; RSS < 100 MiB.
BENCH_NAME=export-archive
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires nbdinfo

DATA_MIB=${BENCH_DATA_MIB:-2048}
echo "== export-archive: 8 GiB disk, ext4 with ~${DATA_MIB} MiB of /usr"
new_system vm1 8G
# The disk takes minutes to make: it is kept in RPFS_BENCH_DIR and reused.
CACHE=${RPFS_BENCH_DIR:-/var/tmp/rpfs-bench}/export-archive-disk-$DATA_MIB.qcow2
if [[ -f $CACHE ]]; then
  cp --sparse=always "$CACHE" "$IMG"
  say "reused $CACHE: $(mib "$(du_bytes "$IMG")") MiB allocated"
else
STAGE=$BWORK/usr
mkdir -p "$STAGE"
t0=$(now)
left=$DATA_MIB
for d in /usr/share /usr/bin /usr/sbin /usr/include /usr/lib/*; do
  ((left > 0)) || break
  [[ -d $d ]] || continue
  sz=$(du -sm "$d" | cut -f1)
  ((sz <= left)) || continue
  mkdir -p "$STAGE$(dirname "$d")"
  cp -a "$d" "$STAGE$(dirname "$d")/"
  left=$((left - sz))
done
truncate -s 8G "$BWORK/fs.raw"
mkfs.ext4 -q -d "$STAGE" "$BWORK/fs.raw"
rm -rf "$STAGE"
qemu-img convert -f raw -O qcow2 "$BWORK/fs.raw" "$IMG"
rm -f "$BWORK/fs.raw"
t1=$(now)
say "made the disk in $(secs "$t0" "$t1") s: $(mib "$(du_bytes "$IMG")") MiB allocated"
cp --sparse=always "$IMG" "$CACHE"
fi

# export-nice 0 (BENCH_EXPORT_NICE): on this shared VM other users' work
# runs at nice 0, and a nice 19 export then gets a share of the CPU that
# changes from minute to minute; the qcow2 export has qemu-storage-daemon
# (never reniced) do much of its work, an archive export does its own.
echo "export-nice = ${BENCH_EXPORT_NICE:-0}" >>"$STORE/systems/vm1.conf"
mount_rpfs
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"

# run_export NAME FORMAT: one export into $BWORK/NAME; sets T and SIZE.
run_export() {
  local out=$BWORK/$1 t0 t1
  settle
  t0=$(now)
  start_export "$RP" "$out"$'\n'"Format=$2"
  wait_job "$JOB"
  t1=$(now)
  T=$(secs "$t0" "$t1")
  SIZE=$(du -s -B1 --apparent-size "$out" | awk '{ print $1 }')
  say "$1: $T s, $(mib "$SIZE") MiB; rpfs VmHWM $(hwm "$RPFS_PID") KiB"
}

# run_stream: cat of export.tar.zst into $BWORK/stream.tar.zst; T, SIZE.
run_stream() {
  local t0 t1
  settle
  t0=$(now)
  cat "$RP/export.tar.zst" >"$BWORK/stream.tar.zst"
  t1=$(now)
  T=$(secs "$t0" "$t1")
  SIZE=$(stat -c %s "$BWORK/stream.tar.zst")
  say "stream: $T s, $(mib "$SIZE") MiB"
  zstd -t -q "$BWORK/stream.tar.zst" || die "the stream is not valid zstd"
}

# best NAME: T_NAME becomes the smaller of itself and T; S_NAME is SIZE.
best() {
  local t=T_$1
  printf -v "T_$1" %s "$(min "$T" "${!t:-$T}")"
  printf -v "S_$1" %s "$SIZE"
}

# Rounds of the four, best of each: the first export of a run has been up
# to twice as slow as the next ones (not explained; seen in the directory
# export as much as in the archive ones), and ratios of single runs swung
# with it.
ROUNDS=${BENCH_ROUNDS:-2}
for ((round = 1; round <= ROUNDS; round++)); do
  say "round $round of $ROUNDS"
  rm -rf "$BWORK/qcow2" "$BWORK/tar" "$BWORK/tarzst" "$BWORK/stream.tar.zst"
  run_export qcow2 qcow2
  best QCOW2
  run_export tar tar
  best TAR
  run_export tarzst tar.zst
  best ZST
  run_stream
  best STREAM
done
say "best of $ROUNDS: qcow2 $T_QCOW2 s, tar $T_TAR s, tar.zst $T_ZST s, stream $T_STREAM s"

settle
SOCK=$STORE/run/0.nbd
EXP=$(nbdinfo --list "nbd+unix:///?socket=$SOCK" | sed -n 's/^export="\(rp\.[0-9]*\.0\)":$/\1/p')
[[ $EXP =~ ^rp\.[0-9]+\.0$ ]] || die "no single rp.SEQ.0 export on $SOCK: '$EXP'"
t0=$(now)
qemu-img convert -f raw -O raw "nbd+unix:///$EXP?socket=$SOCK" "$BWORK/sda.raw"
tar --zstd -cSf "$BWORK/ref.tar.zst" -C "$BWORK" sda.raw
t1=$(now)
T_REF=$(secs "$t0" "$t1")
S_REF=$(stat -c %s "$BWORK/ref.tar.zst")
say "reference (qemu-img convert + tar --zstd -cS): $T_REF s, $(mib "$S_REF") MiB"
HWM=$(hwm "$RPFS_PID")
umount_rpfs

result "tar / qcow2 time" "$(ratio "$T_TAR" "$T_QCOW2")" "<= 1.1"
result "tar.zst / qcow2 time" "$(ratio "$T_ZST" "$T_QCOW2")" "<= 1.5"
result "stream / qcow2 time" "$(ratio "$T_STREAM" "$T_QCOW2")" "<= 1.5"
result "tar.zst / reference size" "$(ratio "$S_ZST" "$S_REF")" "<= 1"
result "stream / reference size" "$(ratio "$S_STREAM" "$S_REF")" "<= 1"
result "rpfs VmHWM (MiB)" "$(mib $((HWM * 1024)))" "< 100"
