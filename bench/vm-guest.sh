#!/bin/bash
# Running VMs (issue 3), with the test guest of tests/guest/ (TCG or KVM):
#  1. the guest's write throughput (4 KiB O_DIRECT writes, one at a time,
#     over 64 MiB of each of its two disks) while an export of a log based
#     reference point (2 GiB of data) runs, as a ratio to its throughput
#     just before, with no reference point (target >= 0.8); also while the
#     reference point only keeps its point-in-time data (fleecing).  Three
#     configurations, BENCH_VM_TRIALS trials each (default 3), interleaved:
#       default        export-rate-limit = auto (paced by the guest's
#                      latency), export-nice 19: the defaults for a VM
#       nocap          export-rate-limit = 0: as fast as it goes
#       cap            export-rate-limit = BENCH_VM_RATE (default 64M)
#     Each trial measures the guest over the whole export, from its start
#     to the end of the job; the result is the median of the trials.
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
cleanup_add() { bcleanup_add "$1"; }
# shellcheck source-path=SCRIPTDIR source=../tests/vm.sh
source "$BREPO/tests/vm.sh"
vm_kit
vm_accel
VM_RATE=${BENCH_VM_RATE:-64M}
TRIALS=${BENCH_VM_TRIALS:-3}

# lines: how many progress lines the guest's writer has printed (one every
# 0.5 s, each with its rate over that half second).
lines() { grep -ac 'rpfs-writer: seq=' "$VM_CONSOLE"; }
# rate_since FROM: the mean rate (KiB/s) of the lines printed after line FROM.
rate_since() {
  grep -a 'rpfs-writer: seq=' "$VM_CONSOLE" | sed -n "$(($1 + 1)),\$p" |
    sed 's/.*rate_kib=\([0-9]*\).*/\1/' | awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'
}
# rate_over SECONDS: the guest's mean write rate (KiB/s) over the next SECONDS.
rate_over() {
  local from
  from=$(lines)
  sleep "$1"
  rate_since "$from"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# ---------------------------------------------------------------- 1. throughput
STORE=$BWORK/store
mkdir -p "$STORE/systems" "$BWORK/images"
A=$BWORK/images/g1-sda.qcow2
B=$BWORK/images/g1-sdb.qcow2
qemu-img create -q -f qcow2 "$A" 4G
qemu-img create -q -f qcow2 "$B" 256M
fill_half "$A" 4
CONF=$STORE/systems/g1.conf
define() { # define [KEY = VALUE]: the definition of g1, plus that line
  printf 'qmp = %s\ndisk sda = %s\nnode sda = g1-sda\ndisk sdb = %s\nnode sdb = g1-sdb\n' \
    "$BWORK/g1.qmp" "$A" "$B" >"$CONF"
  [[ -z $1 ]] || echo "$1" >>"$CONF"
}
export VM_SLOTS=16384
define ""
vm_start g1 "$A" "$B"

# trial CONFIG LINE: with LINE in the definition, the guest's rate with no
# reference point (5 s), while rpN keeps its data (5 s), while it is
# exported; appends the ratios to $BWORK/CONFIG.export and .fleece.
N=0
trial() {
  local base fleece from t0 r
  N=$((N + 1))
  define "$2"
  mount_rpfs
  sleep 1
  base=$(rate_over 5)
  mkdir "$MNT/g1/referencepoints/rp$N"
  fleece=$(rate_over 5)
  mkdir -p "$BWORK/e$N"
  start_export "$MNT/g1/referencepoints/rp$N" "$BWORK/e$N"
  t0=$(now)
  from=$(lines)
  wait_job "$JOB"
  r=$(rate_since "$from")
  say "$1: base $base KiB/s, fleecing $fleece, export $r ($(ratio "$r" "$base")) over $(secs "$t0" "$(now)") s"
  printf "%s\n" "$(ratio "$r" "$base")" >>"$BWORK/$1.export"
  printf "%s\n" "$(ratio "$fleece" "$base")" >>"$BWORK/$1.fleece"
  rm -rf "$BWORK/e$N"
  rmdir "$MNT/g1/referencepoints/rp$N"
  umount_rpfs
}
for ((t = 1; t <= TRIALS; t++)); do
  say "trial $t of $TRIALS"
  trial default ""
  trial nocap "export-rate-limit = 0"
  trial cap "export-rate-limit = $VM_RATE"
done
vm_quit g1
all() { tr '\n' ' ' <"$BWORK/$1"; }
say "ratios, default: $(all default.export); nocap: $(all nocap.export); cap: $(all cap.export)"
say "fleecing: $(all default.fleece)$(all nocap.fleece)$(all cap.fleece)"
result "guest writes during fleecing / none, median" "$(cat "$BWORK"/*.fleece | median)"
result "guest writes during an export / none (defaults: auto), median" "$(median <"$BWORK/default.export")" ">= 0.8"
result "the same with export-rate-limit = 0, median" "$(median <"$BWORK/nocap.export")"
result "the same with export-rate-limit = $VM_RATE, median" "$(median <"$BWORK/cap.export")" ">= 0.8"

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
