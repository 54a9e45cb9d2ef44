#!/bin/bash
# rpfs against virtnbdbackup (issue 11 §3) on one libvirt domain: the idle
# test guest (tests/guest/, writer off) with an 8 GiB qcow2 disk holding
# 2 GiB of incompressible data.  Three interleaved runs (the tool that goes
# first alternates); each run: a full backup with each tool, then 1% of the
# disk (82 MiB, 1 MiB pieces spread over the data) rewritten through the
# VM's block layer (HMP qemu-io on the guest's device), then an incremental
# with each tool, then each tool's restore of the incremental.  Figures are
# medians over the runs: wall time, output size, peak RSS (virtnbdbackup:
# /usr/bin/time; rpfs: its VmHWM, reset before each step, plus the highest
# RSS seen of the qemu-nbd the export starts, sampled every 50 ms).  The
# floors of the data path are timed on the same point-in-time NBD export
# (the backup job's socket): qemu-img convert -O qcow2 and nbdcopy.  At the
# end the domain is shut down and both restores of the last run are
# compared with cmp against the disk.
#   bench/peer-virtnbdbackup.sh     (as root; BENCH_PEER_RUNS=3)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPO=$BREPO
WORK=$BWORK
TMPROOT=$BWORK
fail() { die "$*"; }
skip() { die "cannot run: $*"; }
cleanup_add() { bcleanup_add "$1"; }
# shellcheck source-path=SCRIPTDIR source=../tests/libvirtd.sh
source "$BREPO/tests/libvirtd.sh"
requires virtnbdbackup virtnbdrestore nbdinfo
RUNS=${BENCH_PEER_RUNS:-3}
DOM=rpfs-peer-$$
vm_kit
lv_daemon

STORE=$BWORK/store
mkdir -p "$STORE/systems" "$BWORK/images"
chmod o+x "$STORE"
IMG=$BWORK/images/peer.qcow2
say "an 8 GiB disk with 2 GiB of random data"
head -c 2048M /dev/urandom >"$BWORK/data.raw"
truncate -s 8G "$BWORK/data.raw"
qemu-img convert -f raw -O qcow2 "$BWORK/data.raw" "$IMG"
rm -f "$BWORK/data.raw"
printf 'libvirt-domain = %s\nexport-nice = 0\nexport-rate-limit = 0\n' "$DOM" \
  >"$STORE/systems/peer.conf"
VM_CMDLINE="rpfs.writer=0" lv_define "$DOM" "$IMG"
MNT=$BWORK/mnt
mkdir -p "$MNT"
"$RPFS" --store "$STORE" -f -o allow_other "$MNT" >"$BWORK/rpfs.log" 2>&1 &
RPFS_PID=$!
bcleanup_add "fusermount3 -u $MNT 2>/dev/null; wait $RPFS_PID 2>/dev/null"
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || die "rpfs did not mount: $(cat "$BWORK/rpfs.log")"
RPS=$MNT/peer/referencepoints
# The guest's virtio-blk device (libvirt's alias of the first virtio disk).
DEV=$(lv_virsh dumpxml "$DOM" | sed -n "s/.*<alias name='\(virtio-disk[0-9]*\)'.*/\1/p" | head -n 1)
[[ -n $DEV ]] || die "cannot find the guest's block device"

# rewrite_1pct N: 82 pieces of 1 MiB over the first 2 GiB, new content.
rewrite_1pct() {
  local i off
  for ((i = 0; i < 82; i++)); do
    off=$(((i * 25 + $1 * 7) % 2048))
    lv_virsh qemu-monitor-command "$DOM" --hmp \
      "qemu-io -d /machine/peripheral/$DEV/virtio-backend \"write -P 0x$(printf %02x $(((i + $1 * 13) % 250 + 1))) ${off}M 1M\"" >"$BWORK/hmp.out"
    # HMP answers errors as text, with virsh's status 0.
    ! grep -qi 'error\|conflict\|not' "$BWORK/hmp.out" || die "qemu-io: $(cat "$BWORK/hmp.out")"
  done
}

hwm_reset() { echo 5 >"/proc/$RPFS_PID/clear_refs"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$RPFS_PID/status"; }
# nbd_rss_sample: raise NBD_RSS to the RSS (KiB) of any qemu-nbd child of
# rpfs now running; forks nothing.
nbd_rss_sample() {
  local c comm
  child_pids "$RPFS_PID"
  for c in "${KIDS[@]}"; do
    read -r comm 2>/dev/null <"/proc/$c/comm" || continue
    [[ $comm == qemu-nbd ]] || continue
    proc_kib "$c" VmRSS
    ((KIB > NBD_RSS)) && NBD_RSS=$KIB
  done
  return 0
}

# rpfs_export RP OUT [LINES...]: timed; sets T SIZE RSS (KiB).  The wait
# polls JobState and samples qemu-nbd's RSS every 50 ms without forking a
# process: a `cat`, a `pgrep`, an `awk` and a `sleep` every 50 ms would
# take CPU from the export being timed (convert and virtnbdbackup are
# timed without any poller).
rpfs_export() {
  local rp=$1 out=$2 t0 t1 state
  shift 2
  mkdir -p "$out"
  hwm_reset
  NBD_RSS=0
  t0=$EPOCHREALTIME
  printf '%s\n' "$out" "$@" >"$RPS/$rp/ExportReferencePoint"
  while :; do
    read -r state <"$RPS/$rp/job/JobState" || state=""
    t1=$EPOCHREALTIME
    [[ $state == 7 || $state == 8 || $state == 10 ]] && break
    nbd_rss_sample
    _bsleep 0.05
  done
  T=$(secs "$t0" "$t1")
  [[ $state == 7 ]] || die "rpfs export of $rp: $(cat "$RPS/$rp/job/ErrorDescription")"
  RSS=$(($(hwm_kib) + NBD_RSS))
  SIZE=$(du_bytes "$out")
}

# virtnbdbackup refuses to run while the domain has checkpoints it did not
# make ("Foreign checkpoint found"): rpfs's are taken out of libvirt's
# metadata around each of its runs (the bitmaps stay) and redefined after;
# this is not timed.
hide_rpfs() {
  local cp
  mkdir -p "$BWORK/hidden"
  for cp in $(lv_virsh checkpoint-list "$DOM" --name --topological | grep '^rpfs-' || true); do
    lv_virsh checkpoint-dumpxml "$DOM" "$cp" --no-domain >"$BWORK/hidden/$(ls "$BWORK/hidden" | wc -l).$cp.xml"
  done
  for cp in $(lv_virsh checkpoint-list "$DOM" --name | grep '^rpfs-' || true); do
    lv_virsh checkpoint-delete "$DOM" "$cp" --metadata >/dev/null
  done
}
unhide_rpfs() {
  local f
  for f in $(ls "$BWORK/hidden" | sort -n); do
    lv_virsh checkpoint-create "$DOM" "$BWORK/hidden/$f" --redefine >/dev/null
  done
  rm -rf "$BWORK/hidden"
}

# vnb LEVEL OUT: timed virtnbdbackup; sets T SIZE RSS.
vnb() {
  local t0
  hide_rpfs
  t0=$(now)
  /usr/bin/time -f %M -o "$BWORK/vnb.rss" virtnbdbackup -n -d "$DOM" -l "$1" -o "$2" \
    -S "$BWORK" >"$BWORK/vnb.$1.log" 2>&1 || die "virtnbdbackup -l $1: $(tail -n 5 "$BWORK/vnb.$1.log")"
  sync
  T=$(secs "$t0" "$(now)")
  unhide_rpfs
  RSS=$(cat "$BWORK/vnb.rss")
  SIZE=$(du_bytes "$2")
}

declare -A F
add() { F[$1]+="$2 "; }
median() { tr ' ' '\n' <<<"${F[$1]}" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for ((run = 1; run <= RUNS; run++)); do
  say "run $run of $RUNS"
  R=$BWORK/run$run
  mkdir -p "$R"
  lv_virsh checkpoint-list "$DOM" --name | sed '/^$/d' | while read -r cp; do
    [[ $cp == virtnbdbackup* ]] && lv_virsh checkpoint-delete "$DOM" "$cp" >/dev/null
  done
  rm -rf "$BWORK/checkpoints"
  settle
  # ---- full: one tool after the other, the first alternating
  for tool in $( ((run % 2)) && echo "rpfs vnb" || echo "vnb rpfs"); do
    if [[ $tool == rpfs ]]; then
      mkdir "$RPS/f$run"
      # The floors, on the same point-in-time export.
      SOCK=$STORE/run/lv0/nbd.sock
      t0=$(now)
      qemu-img convert -O qcow2 "nbd+unix:///vda?socket=$SOCK" "$R/convert.qcow2"
      sync -f "$R/convert.qcow2"
      add convert "$(secs "$t0" "$(now)")"
      rm -f "$R/convert.qcow2"
      t0=$(now)
      nbdcopy "nbd+unix:///vda?socket=$SOCK" "$R/nbdcopy.raw"
      sync -f "$R/nbdcopy.raw"
      add nbdcopy "$(secs "$t0" "$(now)")"
      rm -f "$R/nbdcopy.raw"
      settle
      rpfs_export "f$run" "$R/rpfs-full" KeepAssociatedData=false
      add rpfs_full "$T"; add rpfs_full_size "$SIZE"; add rpfs_full_rss "$RSS"
      say "rpfs full $T s, $(mib "$SIZE") MiB, RSS $((RSS / 1024)) MiB"
    else
      vnb full "$R/vnb"
      add vnb_full "$T"; add vnb_full_size "$SIZE"; add vnb_full_rss "$RSS"
      say "virtnbdbackup full $T s, $(mib "$SIZE") MiB, RSS $((RSS / 1024)) MiB"
    fi
    settle
  done
  rewrite_1pct "$run"
  # ---- incremental
  for tool in $( ((run % 2)) && echo "rpfs vnb" || echo "vnb rpfs"); do
    if [[ $tool == rpfs ]]; then
      mkdir "$RPS/i$run"
      rpfs_export "i$run" "$R/rpfs-inc" "BaseReferencePoint=f$run" KeepAssociatedData=false
      add rpfs_inc "$T"; add rpfs_inc_size "$SIZE"; add rpfs_inc_rss "$RSS"
      say "rpfs incremental $T s, $(mib "$SIZE") MiB, RSS $((RSS / 1024)) MiB"
    else
      s0=$(du_bytes "$R/vnb")
      vnb inc "$R/vnb"
      SIZE=$((SIZE - s0))
      add vnb_inc "$T"; add vnb_inc_size "$SIZE"; add vnb_inc_rss "$RSS"
      say "virtnbdbackup incremental $T s, $(mib "$SIZE") MiB, RSS $((RSS / 1024)) MiB"
    fi
    settle
  done
  # ---- restores of the incremental
  t0=$(now)
  qemu-img convert -O qcow2 "$R/rpfs-inc/peer/disks/vda.qcow2" "$R/rpfs-restored.qcow2"
  sync -f "$R/rpfs-restored.qcow2"
  add rpfs_restore "$(secs "$t0" "$(now)")"
  t0=$(now)
  /usr/bin/time -f %M -o "$BWORK/vnr.rss" virtnbdrestore -n -i "$R/vnb" -o "$R/vnb-restored" \
    >"$BWORK/vnr.log" 2>&1 || die "virtnbdrestore: $(tail -n 5 "$BWORK/vnr.log")"
  sync
  add vnb_restore "$(secs "$t0" "$(now)")"
  say "restores: rpfs $(tr ' ' '\n' <<<"${F[rpfs_restore]}" | sed '/^$/d' | tail -n 1) s, virtnbdrestore $(tr ' ' '\n' <<<"${F[vnb_restore]}" | sed '/^$/d' | tail -n 1) s"
  rmdir "$RPS/f$run" "$RPS/i$run"
  if ((run < RUNS)); then
    rm -rf "$R"
  fi
done

say "shutting the domain down to compare the restores with the disk"
lv_virsh shutdown "$DOM" >/dev/null
for _ in $(seq 300); do
  [[ $(lv_virsh domstate "$DOM") == "shut off" ]] && break
  sleep 0.2
done
[[ $(lv_virsh domstate "$DOM") == "shut off" ]] || lv_virsh destroy "$DOM" >/dev/null
qemu-img convert -O raw "$IMG" "$BWORK/disk.raw"
qemu-img convert -O raw "$R/rpfs-restored.qcow2" "$BWORK/rpfs.raw"
VNB_IMG=$(find "$R/vnb-restored" -type f ! -name '*.xml' ! -name '*.log' | head -n 1)
qemu-img convert -O raw "$VNB_IMG" "$BWORK/vnb.raw"
cmp "$BWORK/disk.raw" "$BWORK/rpfs.raw" && RPFS_EXACT=yes || RPFS_EXACT=NO
cmp "$BWORK/disk.raw" "$BWORK/vnb.raw" && VNB_EXACT=yes || VNB_EXACT=NO

for k in rpfs_full vnb_full convert nbdcopy rpfs_inc vnb_inc rpfs_restore vnb_restore \
  rpfs_full_size vnb_full_size rpfs_inc_size vnb_inc_size rpfs_full_rss vnb_full_rss \
  rpfs_inc_rss vnb_inc_rss; do
  say "$k: ${F[$k]} -> median $(median "$k")"
done
result "full: rpfs / virtnbdbackup (time)" "$(ratio "$(median rpfs_full)" "$(median vnb_full)")" "<= 0.4"
result "full: rpfs / qemu-img convert (time)" "$(ratio "$(median rpfs_full)" "$(median convert)")" "<= 1.0"
result "full: rpfs / nbdcopy (time)" "$(ratio "$(median rpfs_full)" "$(median nbdcopy)")"
result "incremental: rpfs / virtnbdbackup (time)" "$(ratio "$(median rpfs_inc)" "$(median vnb_inc)")" "<= 0.4"
result "restore: rpfs / virtnbdrestore (time)" "$(ratio "$(median rpfs_restore)" "$(median vnb_restore)")" "<= 0.3"
result "full: rpfs / virtnbdbackup (size)" "$(ratio "$(median rpfs_full_size)" "$(median vnb_full_size)")" "<= 1.0"
result "incremental: rpfs / virtnbdbackup (size)" "$(ratio "$(median rpfs_inc_size)" "$(median vnb_inc_size)")" "<= 1.0"
result "full: rpfs / virtnbdbackup (peak RSS)" "$(ratio "$(median rpfs_full_rss)" "$(median vnb_full_rss)")" "<= 0.5"
result "restores exact (rpfs, virtnbdbackup)" "$RPFS_EXACT, $VNB_EXACT" "yes, yes"
