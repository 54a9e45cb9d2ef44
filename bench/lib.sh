# bench/lib.sh — shared helpers for the benchmarks (bench/*.sh).
#
# A benchmark starts with
#     source "$(dirname "$0")/lib.sh"
# Benchmarks print figures, never assert timing.  A result line for the
# summary of bench/run-all.sh looks like
#     @@ <benchmark> | <figure> | <value> | <target>
# (made by `result`); everything else is commentary for people.
#
# Per benchmark:
#   BWORK   /var/tmp/rpfs-bench/<bench>.XXXX (not tmpfs): store, images,
#           mount point, export directories; removed at exit
# Environment knobs:
#   RPFS            the binary (default: ./rpfs of the repository)
#   RPFS_BENCH_DIR  parent of BWORK (default /var/tmp/rpfs-bench)
#   RPFS_BENCH_KEEP=1  keep BWORK
# shellcheck shell=bash
# shellcheck disable=SC2034 # sets variables for the scripts that source it

set -euo pipefail

BREPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$BREPO"
BENCH_NAME=${BENCH_NAME:-$(basename "$0" .sh)}
RPFS=${RPFS:-$BREPO/rpfs}
[[ $RPFS == /* ]] || RPFS=$BREPO/$RPFS
export LC_ALL=C

die() {
  echo "$BENCH_NAME: error: $*" >&2
  exit 1
}

for c in fusermount3 mountpoint qemu-img qemu-io qemu-storage-daemon qemu-nbd \
  nbdcopy sha256sum awk; do
  command -v "$c" >/dev/null 2>&1 || die "command '$c' not found"
done
((EUID == 0)) || die "run as root (mount -o allow_other, drop of page cache)"
[[ -x $RPFS ]] || die "rpfs binary not found at $RPFS (run make rpfs)"

BENCH_DIR=${RPFS_BENCH_DIR:-/var/tmp/rpfs-bench}
mkdir -p "$BENCH_DIR"
chmod 0755 "$BENCH_DIR"
BWORK=$(mktemp -d "$BENCH_DIR/$BENCH_NAME.XXXX")
chmod 0755 "$BWORK"

# ---------------------------------------------------------------- output

# say MSG: commentary.
say() { echo "   $*"; }
# requires CMD...: die unless each command is installed.
requires() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "command '$c' not found"; done
}

# result FIGURE VALUE [TARGET]: one line of the summary table, under the
# name RESULT_NAME (default: the benchmark's).
result() {
  printf '@@ %s | %s | %s | %s\n' "${RESULT_NAME:-$BENCH_NAME}" "$1" "$2" "${3:--}"
}

# now: wall clock in seconds with nanoseconds.
now() { echo "$EPOCHREALTIME"; }

# secs T0 T1: T1 - T0 with 2 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ratio A B: A / B with 3 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.3f", a / b }'; }

# mib BYTES: bytes in MiB with 1 decimal.
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }

# min A B
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'; }

# du_bytes FILE: allocated bytes of FILE (or of a tree).
du_bytes() { du -s -B1 -- "$1" | awk '{ print $1 }'; }

# settle: write back dirty pages, so that one timed step does not pay for the
# writeback of the previous one.
settle() { sync; }

# ---------------------------------------------------------------- cleanup

_BCLEANUP=()
bcleanup_add() { _BCLEANUP+=("$1"); }

_bench_exit() {
  local rc=$? i
  set +e
  for ((i = ${#_BCLEANUP[@]} - 1; i >= 0; i--)); do
    eval "${_BCLEANUP[i]}"
  done
  if [[ ${RPFS_BENCH_KEEP:-} == 1 ]]; then
    echo "kept: $BWORK" >&2
  else
    rm -rf "$BWORK"
  fi
  exit "$rc"
}
trap _bench_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---------------------------------------------------------------- store

# new_system NAME SIZE: STORE=$BWORK/store with system NAME holding one disk
# sda, an empty qcow2 of SIZE at IMG=$BWORK/images/NAME-sda.qcow2.
new_system() {
  STORE=$BWORK/store
  mkdir -p "$STORE/systems" "$BWORK/images"
  IMG=$BWORK/images/$1-sda.qcow2
  printf 'disk sda = %s\n' "$IMG" >"$STORE/systems/$1.conf"
  qemu-img create -q -f qcow2 "$IMG" "$2"
}

# fill_half IMG SIZE_GIB: non-zero data in 64 MiB chunks every other 128 MiB
# (half of the disk), one distinct byte pattern per chunk.
fill_half() {
  local img=$1 size_mib=$(($2 * 1024)) off cmds=()
  for ((off = 0; off < size_mib; off += 128)); do
    cmds+=(-c "write -P 0x$(printf %02x $((0x20 + off / 128 % 200))) ${off}M 64M")
  done
  qemu-io -f qcow2 "${cmds[@]}" "$img" >/dev/null
}

# ---------------------------------------------------------------- mount

RPFS_PID=""
# mount_rpfs: start rpfs on STORE at MNT=$BWORK/mnt; sets RPFS_PID.
mount_rpfs() {
  MNT=$BWORK/mnt
  mkdir -p "$MNT"
  "$RPFS" --store "$STORE" -f -o allow_other "$MNT" >"$BWORK/rpfs.log" 2>&1 &
  RPFS_PID=$!
  bcleanup_add "force_umount"
  local deadline=$((SECONDS + 30))
  until mountpoint -q "$MNT"; do
    kill -0 "$RPFS_PID" 2>/dev/null || {
      cat "$BWORK/rpfs.log" >&2
      die "rpfs exited before $MNT was mounted"
    }
    ((SECONDS < deadline)) || die "$MNT not mounted after 30 s"
    sleep 0.05
  done
}

# umount_rpfs: fusermount3 -u and wait for rpfs to exit (it shuts QEMU down).
umount_rpfs() {
  [[ -n $RPFS_PID ]] || return 0
  local tries=0
  until fusermount3 -u "$MNT" 2>/dev/null; do
    tries=$((tries + 1))
    ((tries < 50)) || die "fusermount3 -u $MNT keeps failing"
    sleep 0.2
  done
  local deadline=$((SECONDS + 60))
  while kill -0 "$RPFS_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$RPFS_PID" 2>/dev/null; then
    echo "warning: rpfs did not exit 60 s after the unmount; SIGTERM" >&2
    kill -TERM "$RPFS_PID" 2>/dev/null || true
  fi
  wait "$RPFS_PID" 2>/dev/null || true
  RPFS_PID=""
}

force_umount() {
  if [[ -n $RPFS_PID ]]; then
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" 2>/dev/null
    local i
    for ((i = 0; i < 200; i++)); do
      kill -0 "$RPFS_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$RPFS_PID" 2>/dev/null
    wait "$RPFS_PID" 2>/dev/null
    RPFS_PID=""
  fi
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT" 2>/dev/null
  return 0
}

# hwm PID: VmHWM (peak resident set) of PID in KiB.
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# cpu PID: "own children" CPU seconds (user + system) of PID; children
# counts only the children it has waited for.
cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{
    sub(/^.*\) /, "")            # fields from 3 on: state is $1, utime $12
    printf "%.2f %.2f\n", ($12 + $13) / hz, ($14 + $15) / hz }' "/proc/$1/stat"
}

# qsd_pid: the qemu-storage-daemon rpfs started (a child of rpfs).
qsd_pid() {
  local c
  # shellcheck disable=SC2013 # pids, separated by spaces
  for c in $(cat /proc/"$RPFS_PID"/task/*/children 2>/dev/null); do
    [[ $(cat "/proc/$c/comm" 2>/dev/null) == qemu-storage-d* ]] && echo "$c" && return 0
  done
  return 0
}

# ---------------------------------------------------------------- jobs

# interval_secs VALUE: a CIM interval (ddddddddhhmmss.mmmmmm:000) in seconds.
interval_secs() {
  awk -v v="$1" 'BEGIN { d = substr(v, 1, 8); h = substr(v, 9, 2)
    m = substr(v, 11, 2); s = substr(v, 13, 9)
    printf "%.2f", d * 86400 + h * 3600 + m * 60 + s }'
}

# start_export RPDIR PAYLOAD: write PAYLOAD to RPDIR/ExportReferencePoint;
# sets JOB.
start_export() {
  printf '%s\n' "$2" >"$1/ExportReferencePoint" ||
    die "ExportReferencePoint failed: $(cat "$1/ExportReferencePoint")"
  local rv
  read -r rv JOB _ <"$1/ExportReferencePoint"
  [[ $rv == 4096 ]] || die "ExportReferencePoint returned $rv"
}

# _bsleep SECS: sleep without a fork (a read that times out on a FIFO that
# nobody writes), for polling loops.
_bsleep() {
  if [[ -z ${_BSLEEP_FD:-} ]]; then
    mkfifo "$BWORK/.sleep"
    exec {_BSLEEP_FD}<>"$BWORK/.sleep"
  fi
  read -r -t "$1" -u "$_BSLEEP_FD" _ || true
}

# child_pids PID: KIDS=(the children of every thread of PID), read from
# /proc without forking a process.
child_pids() {
  local f k
  KIDS=()
  for f in /proc/"$1"/task/*/children; do
    k=()
    read -r -a k 2>/dev/null <"$f" || true
    KIDS+=("${k[@]}")
  done
}

# proc_kib PID FIELD: the value of FIELD (VmRSS, VmHWM) in /proc/PID/status,
# in KiB, into KIB (0 if PID is gone); forks nothing.
proc_kib() {
  local key val _
  KIB=0
  while read -r key val _; do
    [[ $key == "$2:" ]] && KIB=$val && return 0
  done 2>/dev/null <"/proc/$1/status" || true
}

# wait_job JOB: poll JobState every 20 ms until 7 (10/8: die).  While it
# waits it watches rpfs's children and records when each helper was first
# and last seen (PHASE_FIRST[comm], PHASE_LAST[comm]); JOB_DONE is the time
# the job was seen completed.  The loop forks no process: on two cores,
# a `date`, a `cat` and a `sleep` every 20 ms cost the export being timed
# several percent of the CPU (docs/performance.md, "The running VM's floor").
declare -gA PHASE_FIRST=() PHASE_LAST=()
wait_job() {
  local dir=$MNT/jobs/$1 state c comm t
  PHASE_FIRST=()
  PHASE_LAST=()
  local deadline=$((SECONDS + 900))
  while :; do
    read -r state <"$dir/JobState" || state=""
    t=$EPOCHREALTIME
    child_pids "$RPFS_PID"
    for c in "${KIDS[@]}"; do
      read -r comm 2>/dev/null <"/proc/$c/comm" || continue
      case $comm in
        qemu-storage-d* | rpfs) continue ;; # rpfs: a fork for a check
      esac
      [[ -n ${PHASE_FIRST[$comm]:-} ]] || PHASE_FIRST[$comm]=$t
      PHASE_LAST[$comm]=$t
    done
    case $state in
      7)
        JOB_DONE=$t
        return 0
        ;;
      8 | 10) die "job $1 ended in JobState $state: $(cat "$dir/ErrorDescription")" ;;
    esac
    ((SECONDS < deadline)) || die "job $1 not done after 900 s"
    _bsleep 0.02
  done
}
