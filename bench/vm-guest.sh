#!/bin/bash
# Running VMs (issue 3), with the test guest of tests/guest/ (TCG or KVM):
#  1. the guest's write throughput (4 KiB O_DIRECT writes, one at a time,
#     over 64 MiB of each of its two disks) with no reference point, while a
#     log based reference point keeps its point-in-time data (fleecing), and
#     while that reference point is exported (2 GiB of data), and while a
#     second one is exported with export-rate-limit = BENCH_VM_RATE (default
#     64M): ratios to the first (target >= 0.8 during the export);
#  2. how long CreateReferencePoint (mkdir) takes on a 4-disk VM whose guest
#     writes: median of 21 (target < 50 ms), log based and RCT based.
#   bench/vm-guest.sh              (as root)
#   BENCH_VM_RATE=128M BENCH_VM_LATENCY=0 bench/vm-guest.sh   (part 1 only)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# tests/vm.sh runs inside the test library; give it what it uses.
REPO=$BREPO
WORK=$BWORK
fail() { die "$*"; }
skip() { die "cannot run: $*"; }
requires() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "command '$c' not found"; done
}
cleanup_add() { bcleanup_add "$1"; }
# shellcheck source-path=SCRIPTDIR source=../tests/vm.sh
source "$BREPO/tests/vm.sh"
vm_kit
vm_accel
VM_RATE=${BENCH_VM_RATE:-64M}

# rate_over SECONDS: the guest's mean write rate (KiB/s) over the next
# SECONDS, from the writer's progress lines (one every 0.5 s).
rate_over() {
  local from to
  from=$(grep -ac 'rpfs-writer: seq=' "$VM_CONSOLE")
  sleep "$1"
  to=$(grep -ac 'rpfs-writer: seq=' "$VM_CONSOLE")
  grep -a 'rpfs-writer: seq=' "$VM_CONSOLE" | sed -n "$((from + 1)),${to}p" |
    sed 's/.*rate_kib=\([0-9]*\).*/\1/' | awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'
}

# export_window RP DIR WHAT: start an export of RP into DIR, set RATE to the
# guest's write rate over a 6 s window inside it, wait for the job.
export_window() {
  local t0 state
  mkdir -p "$2"
  start_export "$1" "$2"
  t0=$(now)
  say "guest writes while $3 (job $JOB, 6 s window)"
  RATE=$(rate_over 6)
  state=$(cat "$MNT/jobs/$JOB/JobState")
  say "  $RATE KiB/s (job state at the end of the window: $state)"
  [[ $state == 4 ]] || say "  warning: the export ended inside the window; the figure mixes both"
  wait_job "$JOB"
  say "  export took $(secs "$t0" "$(now)") s"
}

# ---------------------------------------------------------------- 1. throughput
STORE=$BWORK/store
mkdir -p "$STORE/systems" "$BWORK/images"
A=$BWORK/images/g1-sda.qcow2
B=$BWORK/images/g1-sdb.qcow2
qemu-img create -q -f qcow2 "$A" 4G
qemu-img create -q -f qcow2 "$B" 256M
fill_half "$A" 4
cat >"$STORE/systems/g1.conf" <<EOF
qmp = $BWORK/g1.qmp
disk sda = $A
node sda = g1-sda
disk sdb = $B
node sdb = g1-sdb
EOF
export VM_SLOTS=16384
vm_start g1 "$A" "$B"
mount_rpfs
RPS=$MNT/g1/referencepoints
sleep 3
say "guest writes with no reference point (10 s)"
r0=$(rate_over 10)
say "  $r0 KiB/s"
mkdir "$RPS/rp1"
say "guest writes while rp1 keeps its point-in-time data (10 s)"
r1=$(rate_over 10)
say "  $r1 KiB/s"
export_window "$RPS/rp1" "$BWORK/e1" "rp1 is exported"
r2=$RATE

# The same with export-rate-limit (BENCH_VM_RATE, default 64M): remount with
# the cap in the definition, a new reference point, the same window.
umount_rpfs
echo "export-rate-limit = $VM_RATE" >>"$STORE/systems/g1.conf"
mount_rpfs
rmdir "$RPS/rp1"
mkdir "$RPS/rp2"
sleep 2
export_window "$RPS/rp2" "$BWORK/e2" "rp2 is exported with export-rate-limit = $VM_RATE"
r3=$RATE
result "guest writes, no reference point (KiB/s)" "$r0"
result "guest writes during fleecing / none" "$(ratio "$r1" "$r0")"
result "guest writes during an export / none" "$(ratio "$r2" "$r0")" ">= 0.8"
result "guest writes during an export capped at $VM_RATE/s / none" "$(ratio "$r3" "$r0")" ">= 0.8"
umount_rpfs
vm_quit g1

# ---------------------------------------------------------------- 2. latency
if [[ ${BENCH_VM_LATENCY:-1} == 0 ]]; then
  say "BENCH_VM_LATENCY=0: CreateReferencePoint latency not measured"
  exit 0
fi
for d in a b c d; do
  qemu-img create -q -f qcow2 "$BWORK/images/g4-sd$d.qcow2" 1G
done
{
  echo "qmp = $BWORK/g4.qmp"
  for d in a b c d; do
    echo "disk sd$d = $BWORK/images/g4-sd$d.qcow2"
    echo "node sd$d = g4-sd$d"
  done
} >"$STORE/systems/g4.conf"
rm -f "$STORE/systems/g1.conf"
export VM_SLOTS=2048
vm_start g4 "$BWORK"/images/g4-sd{a,b,c,d}.qcow2
mount_rpfs
RPS=$MNT/g4/referencepoints

# ms CMD...: run CMD, print its wall time in milliseconds.
ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$@"
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

say "21 log based reference points (mkdir), each followed by rmdir of the one before"
: >"$BWORK/log.ms"
prev=""
for i in $(seq 1 21); do
  ms mkdir "$RPS/l$i" >>"$BWORK/log.ms"
  [[ -z $prev ]] || rmdir "$RPS/$prev"
  prev=l$i
done
rmdir "$RPS/$prev"
say "  ms: $(tr '\n' ' ' <"$BWORK/log.ms")"
say "21 RCT based reference points (ReferencePointType=2)"
: >"$BWORK/rct.ms"
for i in $(seq 1 21); do
  ms sh -c "printf 'r$i\nReferencePointType=2\n' >'$MNT/g4/CreateReferencePoint'" >>"$BWORK/rct.ms"
done
say "  ms: $(tr '\n' ' ' <"$BWORK/rct.ms")"
say "10 log based reference points kept at once"
: >"$BWORK/kept.ms"
for i in $(seq 1 10); do ms mkdir "$RPS/k$i" >>"$BWORK/kept.ms"; done
say "  ms: $(tr '\n' ' ' <"$BWORK/kept.ms")"
result "CreateReferencePoint, 4 disks, log based, median (ms)" "$(median <"$BWORK/log.ms")" "< 50"
result "CreateReferencePoint, 4 disks, RCT based, median (ms)" "$(median <"$BWORK/rct.ms")" "< 50"
result "CreateReferencePoint, 4 disks, the 10th kept log based (ms)" "$(tail -n 1 "$BWORK/kept.ms")"
umount_rpfs
vm_quit g4
