# tests/lib.sh — shared helpers for the mount tests (tests/test-*.sh).
#
# Every test starts with
#     source "$(dirname "$0")/lib.sh"
# and then uses the helpers below.  A test exits 0 on success, 77 when it
# cannot run here (skip), anything else on failure.  It runs from the
# repository root; rpfs is $RPFS or ./rpfs.
#
# Per test:
#   WORK     tests/work/<test>.XXXX: stores, images, logs (removed on success;
#            on failure only the logs are kept)
#   TMPROOT  /tmp/rpfs-<test>.XXXX (mode 0755): mount points and export
#            directories, reachable by the unprivileged user of as_user
# Environment knobs:
#   RPFS                  the binary (default: ./rpfs)
#   RPFS_KEEP=1           keep WORK and TMPROOT whatever the outcome
#   RPFS_TEST_BUSY_MB=N   data on the disk of tests that need an export
#                         still running while they act (default 512)
# shellcheck shell=bash

set -euo pipefail
set -o errtrace

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
TEST_NAME=$(basename "$0" .sh)
RPFS=${RPFS:-$REPO/rpfs}
[[ $RPFS == /* ]] || RPFS=$REPO/$RPFS
BUSY_MB=${RPFS_TEST_BUSY_MB:-512}
export LC_ALL=C

mkdir -p "$REPO/tests/work"
WORK=$(mktemp -d "$REPO/tests/work/$TEST_NAME.XXXX")
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/rpfs-$TEST_NAME.XXXX")
chmod 0755 "$WORK" "$TMPROOT"

# Sanitizer builds (make SANITIZE=1): make every finding fatal and visible in
# the rpfs log, which umount_rpfs greps.  The leak check runs when rpfs exits
# after the unmount, so it is forced on even when ASAN_OPTIONS comes from the
# environment (later options win); full stacks name the allocating caller
# behind rp_asprintf and libc's vasprintf, which frame-pointer unwinding loses.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:fast_unwind_on_malloc=0}:detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---------------------------------------------------------------- reporting

# step MSG: say what the test checks next.
step() { echo "-- $*"; }

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

skip() {
  echo "SKIP: $*"
  exit 77
}

pass() {
  echo "PASS: $TEST_NAME"
  exit 0
}

# Unexpected command failures (set -e) say where they happened.
_on_err() {
  echo "error: '$2' exited with status $1 (${3#"$REPO"/})" >&2
}
trap '_on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]}:$LINENO"' ERR

# ---------------------------------------------------------------- cleanup

_CLEANUP=()
# cleanup_add 'shell command': run at exit, last added first.
cleanup_add() { _CLEANUP+=("$1"); }

declare -gA _MNT_PID=() _MNT_LOG=() _MNT_STORE=()
_MOUNT_SEQ=0

_run_cleanup() {
  local rc=$? i mnt
  trap - ERR
  set +e
  # Logs of rpfs instances that are still mounted help most on failure.
  if ((rc != 0 && rc != 77)); then
    for mnt in "${!_MNT_LOG[@]}"; do
      echo "---- last lines of ${_MNT_LOG[$mnt]} (rpfs on $mnt)" >&2
      tail -n 40 "${_MNT_LOG[$mnt]}" >&2
    done
  fi
  for ((i = ${#_CLEANUP[@]} - 1; i >= 0; i--)); do
    eval "${_CLEANUP[i]}"
  done
  if [[ ${RPFS_KEEP:-} == 1 ]]; then
    echo "kept: $WORK $TMPROOT" >&2
  else
    rm -rf "$TMPROOT"
    if ((rc == 0 || rc == 77)); then
      rm -rf "$WORK"
    else
      find "$WORK" -depth -mindepth 1 ! -name '*.log' -delete 2>/dev/null
      find "$WORK" -depth -mindepth 1 -type d -empty -delete 2>/dev/null
      echo "logs kept in $WORK" >&2
    fi
  fi
  exit "$rc"
}
trap _run_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# ---------------------------------------------------------------- requirements

# requires CMD...: skip the test (exit 77) when a command is missing.
requires() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "command '$c' not found"
  done
}

requires_root() {
  ((EUID == 0)) || skip "needs root"
}

requires fusermount3 mountpoint qemu-img qemu-io qemu-storage-daemon
[[ -c /dev/fuse ]] || skip "/dev/fuse is missing (run make deps)"
# mount_rpfs uses -o allow_other, which needs root or user_allow_other.
((EUID == 0)) || grep -qs '^user_allow_other' /etc/fuse.conf ||
  skip "needs root or user_allow_other in /etc/fuse.conf"

# ---------------------------------------------------------------- assertions

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
  [[ $1 == "$2" ]] || fail "${3:-value}: expected '$2', got '$1'"
}

# assert_match ACTUAL ERE [WHAT]
assert_match() {
  [[ $1 =~ $2 ]] || fail "${3:-value}: '$1' does not match /$2/"
}

# assert_file_eq FILE EXPECTED: FILE holds exactly EXPECTED plus one "\n"
# (EXPECTED may hold several lines).  An empty EXPECTED accepts an empty file
# or a single "\n".
assert_file_eq() {
  local file=$1 want=$2 got
  got=$(cat -- "$file" && echo x) || fail "cannot read $file"
  got=${got%x}
  if [[ -z $want ]]; then
    [[ -z $got || $got == $'\n' ]] ||
      fail "$file: expected an empty value, got '$got'"
    return 0
  fi
  [[ $got == "$want"$'\n' ]] ||
    fail "$file: expected '$want' (one trailing newline), got '$got'"
}

# assert_empty_dir DIR: DIR exists and holds nothing, hidden entries included.
assert_empty_dir() {
  [[ -d $1 ]] || fail "$1 is not a directory"
  local left
  left=$(ls -A -- "$1")
  [[ -z $left ]] || fail "$1 should be empty but holds: $(echo "$left" | tr '\n' ' ')"
}

# listing DIR: the names in DIR (hidden ones too), sorted, on one line
# separated by single spaces.
listing() {
  # shellcheck disable=SC2012 # names made by the tests: plain ASCII
  ls -A -- "$1" | tr '\n' ' ' | sed 's/ $//'
}

# errno_text NAME: the strerror text of an errno name (glibc).
errno_text() {
  case $1 in
    EPERM) echo "Operation not permitted" ;;
    ENOENT) echo "No such file or directory" ;;
    EIO) echo "Input/output error" ;;
    EACCES) echo "Permission denied" ;;
    EBUSY) echo "Device or resource busy" ;;
    EEXIST) echo "File exists" ;;
    ENODEV) echo "No such device" ;;
    ENOTDIR) echo "Not a directory" ;;
    EISDIR) echo "Is a directory" ;;
    EINVAL) echo "Invalid argument" ;;
    ENOSPC) echo "No space left on device" ;;
    EROFS) echo "Read-only file system" ;;
    ENOMEM) echo "Cannot allocate memory" ;;
    ENOTEMPTY) echo "Directory not empty" ;;
    ENAMETOOLONG) echo "File name too long" ;;
    EPROTO) echo "Protocol error" ;;
    EOPNOTSUPP | ENOTSUP) echo "Operation not supported" ;;
    ETIMEDOUT) echo "Connection timed out" ;;
    *) fail "errno_text: unknown errno name $1" ;;
  esac
}

# assert_fails_with [--as-user] ERRNO[|ERRNO...] 'shell command'
# Runs the command with bash -c (as uid/gid 65534 with --as-user); it must
# fail and its stderr must hold the strerror text of one of the errnos.  The
# command sees exported variables, which avoids quoting file names into it.
assert_fails_with() {
  local runner=()
  if [[ $1 == --as-user ]]; then
    runner=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    shift
  fi
  local errnos=$1 cmd=$2 err rc=0 e text
  err=$("${runner[@]}" bash -c "$cmd" 2>&1 >/dev/null) || rc=$?
  ((rc != 0)) || fail "expected failure with $errnos, but it succeeded: $cmd"
  local IFS='|'
  for e in $errnos; do
    text=$(errno_text "$e")
    [[ $err == *"$text"* ]] && return 0
  done
  fail "expected failure with $errnos, got (status $rc): ${err:-<no message>}  [command: $cmd]"
}

# as_user CMD...: run a command as the unprivileged uid/gid 65534.
as_user() {
  setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
}

# stop_bg PID: stop a background job started as `as_user CMD &` and wait
# for it. $! is the subshell running the function; the command itself is
# its child, so it is stopped first (else it outlives the kill).
stop_bg() {
  pkill -P "$1" 2>/dev/null || true
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# wait_until SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.1
  done
}

# ---------------------------------------------------------------- stores and images

# new_store: an empty store; sets STORE (…/store, holds systems/) and IMAGES
# (…/images, next to it).  Both live in one directory of WORK, which also
# names the QEMU processes that serve this store (see store_procs).
new_store() {
  local home
  home=$(mktemp -d "$WORK/s.XXXX")
  STORE=$home/store
  IMAGES=$home/images
  mkdir -p "$STORE/systems" "$IMAGES"
}

# img_of SYSTEM DISK: path of the image add_system made.
img_of() { echo "$IMAGES/$1-$2.qcow2"; }

# write_pattern IMAGE BYTE OFFSET LENGTH: write BYTE (e.g. 0xa5) over the
# range into a qcow2 image (offset and length take K/M/G suffixes).
write_pattern() {
  qemu-io -f qcow2 -c "write -P $2 $3 $4" "$1" >/dev/null ||
    fail "qemu-io write to $1 failed"
}

# The data add_system puts on its Nth disk (N from 0): byte 0x11+2N over
# [0, 1M) and byte 0x12+2N over [4M, 5M) (disks smaller than 8M: first only).
default_fill() {
  local img=$1 n=$2 size
  write_pattern "$img" $((0x11 + 2 * n)) 0 1M
  size=$(qemu-img info --output=json "$img" | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p')
  ((size < 8 * 1024 * 1024)) || write_pattern "$img" $((0x12 + 2 * n)) 4M 1M
}

# add_system [--uuid UUID] NAME DISK:SIZE...: write STORE/systems/NAME.conf
# and create its qcow2 images (filled by default_fill) in IMAGES.
add_system() {
  local uuid=""
  if [[ $1 == --uuid ]]; then
    uuid=$2
    shift 2
  fi
  local name=$1 conf spec id size n=0
  shift
  (($# > 0)) || set -- sda:32M sdb:16M
  conf=$STORE/systems/$name.conf
  {
    echo "# system $name, made by $TEST_NAME"
    [[ -z $uuid ]] || echo "VirtualSystemIdentifier = $uuid"
    for spec in "$@"; do
      echo "disk ${spec%%:*} = $(img_of "$name" "${spec%%:*}")"
    done
  } >"$conf"
  for spec in "$@"; do
    id=${spec%%:*}
    size=${spec#*:}
    qemu-img create -q -f qcow2 "$(img_of "$name" "$id")" "$size" ||
      fail "qemu-img create failed"
    default_fill "$(img_of "$name" "$id")" "$n"
    n=$((n + 1))
  done
}

# mk_store [NAME [DISK:SIZE...]]: new_store plus one system (default: vm1
# with sda:32M and sdb:16M).
mk_store() {
  new_store
  add_system "${1:-vm1}" "${@:2}"
}

# fill_busy IMAGE: put RPFS_TEST_BUSY_MB MiB of data on IMAGE, so that an
# export of it runs long enough to act on it while it runs.
fill_busy() {
  local img=$1 off cmds=()
  for ((off = 0; off < BUSY_MB; off += 64)); do
    cmds+=(-c "write -P 0x$(printf %02x $((0x40 + off / 64 % 64))) ${off}M 64M")
  done
  qemu-io -f qcow2 "${cmds[@]}" "$img" >/dev/null || fail "fill_busy $img failed"
}

# raw_of IMAGE OUT: the whole content of a qcow2 image as a sparse raw file.
raw_of() {
  qemu-img convert -f qcow2 -O raw "$1" "$2" || fail "qemu-img convert $1 failed"
}

# fill_file FILE BYTE OFFSET LENGTH: overwrite a range of a file in place
# (e.g. a disk in the mount) with BYTE; sizes take K/M/G suffixes.
fill_file() {
  local file=$1 byte=$2 off len
  off=$(numfmt --from=iec "$3")
  len=$(numfmt --from=iec "$4")
  head -c "$len" /dev/zero | tr '\0' "\\$(printf %03o "$byte")" |
    dd of="$file" bs=64K iflag=fullblock oflag=seek_bytes seek="$off" \
      conv=notrunc,fsync status=none ||
    fail "writing $len bytes at $off into $file failed"
}

# new_dir NAME: a new empty directory TMPROOT/NAME (for exports).
new_dir() {
  mkdir -p "$TMPROOT/$1"
  chmod 0755 "$TMPROOT/$1"
  echo "$TMPROOT/$1"
}

# ---------------------------------------------------------------- qcow2 inspection

# data_ranges IMAGE: "start end" of every range that holds data in IMAGE's own
# layer (depth 0), one a line.
data_ranges() {
  qemu-img map --output=json "$1" |
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), "depth": 0, .*"data": true.*/\1 \2/p' |
    awk '{ print $1, $1 + $2 }'
}

# alloc_ranges IMAGE: like data_ranges, but every range allocated in IMAGE's
# own layer (data or zero clusters).
alloc_ranges() {
  qemu-img map --output=json "$1" |
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), "depth": 0, "present": true.*/\1 \2/p' |
    awk '{ print $1, $1 + $2 }'
}

# ranges OFF:LEN...: "start end" lines from OFF:LEN pairs (K/M/G suffixes).
ranges() {
  local r
  for r in "$@"; do
    local s l
    s=$(numfmt --from=iec "${r%%:*}")
    l=$(numfmt --from=iec "${r#*:}")
    echo "$s $((s + l))"
  done
}

# assert_ranges_within WHAT INNER OUTER: every range of the file INNER lies
# inside the union of the ranges of the file OUTER.
assert_ranges_within() {
  local what=$1 inner=$2 outer=$3 bad
  bad=$(awk '
    NR == FNR { s[NR] = $1; e[NR] = $2; n = NR; next }
    {
      cur = $1
      do {
        moved = 0
        for (i = 1; i <= n; i++)
          if (s[i] <= cur && cur < e[i]) { cur = e[i]; moved = 1 }
      } while (moved && cur < $2)
      if (cur < $2) print $1 "-" $2
    }' "$outer" "$inner")
  [[ -z $bad ]] || fail "$what: ranges outside the allowed ones: $(echo "$bad" | tr '\n' ' ')"
}

# bitmaps_of IMAGE: "name flags" per persistent bitmap (flags comma-separated,
# e.g. "auto" or "in-use,auto").  The image must not be in use.
bitmaps_of() {
  qemu-img info --output=json "$1" | tr -d ' \n' |
    grep -o '{"flags":\[[^]]*\],"name":"[^"]*"' |
    sed 's/{"flags":\[\([^]]*\)\],"name":"\([^"]*\)"/\2 \1/; s/"//g' || true
}

# has_bitmap IMAGE NAME: IMAGE holds a persistent bitmap called NAME.
has_bitmap() {
  bitmaps_of "$1" | awk -v n="$2" '$1 == n { f = 1 } END { exit !f }'
}

# assert_no_bitmap_in_use IMAGE: no bitmap of IMAGE carries the in-use flag
# (which a QEMU that did not shut down cleanly leaves behind).
assert_no_bitmap_in_use() {
  local b
  b=$(bitmaps_of "$1")
  ! grep -q 'in-use' <<<"$b" || fail "$1 has bitmaps marked in-use: $(echo "$b" | tr '\n' ';')"
}

# backing_of IMAGE: full path of IMAGE's backing file, empty if none.
backing_of() {
  qemu-img info --output=json "$1" |
    sed -n 's/^ *"full-backing-filename": "\(.*\)",*$/\1/p'
}

# backing_format_of IMAGE
backing_format_of() {
  qemu-img info --output=json "$1" |
    sed -n 's/^ *"backing-filename-format": "\(.*\)",*$/\1/p'
}

# ---------------------------------------------------------------- processes

# store_procs STORE: pids of QEMU helpers (qemu-storage-daemon, qemu-nbd,
# qemu-img, nbdcopy) that belong to STORE: their command line or one of their
# open files names STORE's directory (the store or its images).
store_procs() {
  local home dir pid comm
  home=$(dirname "$1")/
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    comm=$(cat "$dir/comm" 2>/dev/null) || continue
    case $comm in
      qemu-storage-d* | qemu-nbd | qemu-img | nbdcopy) ;;
      *) continue ;;
    esac
    if tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -qF -- "$home"; then
      echo "$pid"
    elif find "$dir/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
      grep -qF -- "$home"; then
      echo "$pid"
    fi
  done
  return 0
}

# qsd_pids STORE: the qemu-storage-daemon processes serving STORE.
qsd_pids() {
  local pid
  for pid in $(store_procs "$1"); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-storage-d* ]] && echo "$pid"
  done
  return 0
}

_describe_procs() {
  local pid
  for pid in "$@"; do
    echo "  $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
  done
}

# ---------------------------------------------------------------- mounting

# start_fails STORE WANT...: rpfs must exit 1 without mounting, and its output
# must hold every WANT string; no QEMU process of STORE may be left.
start_fails() {
  local store=$1 want rc=0 out mnt=$TMPROOT/start-fails
  shift
  mkdir -p "$mnt"
  [[ -x $RPFS ]] || fail "rpfs binary not found at $RPFS (run make)"
  out=$WORK/start.$RANDOM.log
  timeout 30 "$RPFS" --store "$store" -f -o allow_other "$mnt" >"$out" 2>&1 || rc=$?
  if mountpoint -q "$mnt"; then
    fusermount3 -u -z "$mnt"
    fail "rpfs mounted $mnt despite the bad store"
  fi
  ((rc != 124)) || fail "rpfs did not exit within 30 s (it should refuse to start)"
  ((rc == 1)) || fail "rpfs exited with status $rc, expected 1; output: $(cat "$out")"
  for want in "$@"; do
    grep -qF -- "$want" "$out" ||
      fail "rpfs's message does not name '$want'; it said: $(cat "$out")"
  done
  [[ -z $(store_procs "$store") ]] || fail "QEMU processes left after a failed start"
  _sanitizer_check "$out"
  echo "   rpfs said: $(head -n 3 "$out" | tr '\n' ' ')"
}

# mount_rpfs STORE MNT [ARGS...]: start rpfs in the foreground (in the
# background of this shell) and wait until MNT is mounted.  ARGS go before
# the mount point.  Its stdout and stderr go to WORK/rpfs.N.log.
mount_rpfs() {
  local store=$1 mnt=$2
  shift 2
  [[ -x $RPFS ]] || fail "rpfs binary not found at $RPFS (run make)"
  [[ -z ${_MNT_PID[$mnt]:-} ]] || fail "mount_rpfs: $mnt is already mounted"
  mkdir -p "$mnt"
  _MOUNT_SEQ=$((_MOUNT_SEQ + 1))
  local log=$WORK/rpfs.$_MOUNT_SEQ.log
  "$RPFS" --store "$store" -f -o allow_other "$@" "$mnt" >"$log" 2>&1 &
  local pid=$!
  _MNT_PID[$mnt]=$pid
  _MNT_LOG[$mnt]=$log
  _MNT_STORE[$mnt]=$store
  cleanup_add "_force_umount $(printf %q "$mnt")"
  local deadline=$((SECONDS + 20)) rc=0
  until mountpoint -q "$mnt"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || rc=$?
      unset "_MNT_PID[$mnt]" "_MNT_LOG[$mnt]"
      echo "---- $log:" >&2
      cat "$log" >&2
      fail "rpfs exited with status $rc before $mnt was mounted"
    fi
    ((SECONDS < deadline)) || fail "$mnt not mounted 20 s after starting rpfs"
    sleep 0.1
  done
}

# _sanitizer_check LOG
_sanitizer_check() {
  if grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$1"; then
    echo "---- sanitizer report in $1:" >&2
    grep -E -A 30 'AddressSanitizer|runtime error|LeakSanitizer' "$1" | head -n 80 >&2
    fail "sanitizer report in the rpfs log"
  fi
}

# umount_rpfs MNT: unmount with fusermount3 -u, as a user would, and check
# the shutdown was clean: rpfs exits by itself with status 0 within 20 s (a
# SIGKILL is a failure), no QEMU helper of its store is left, no sanitizer
# report in its log.
umount_rpfs() {
  local mnt=$1
  local pid=${_MNT_PID[$mnt]:?umount_rpfs: $mnt was not mounted by mount_rpfs}
  local log=${_MNT_LOG[$mnt]} store=${_MNT_STORE[$mnt]}
  local tries=0 err
  until err=$(fusermount3 -u "$mnt" 2>&1); do
    tries=$((tries + 1))
    ((tries < 25)) || fail "fusermount3 -u $mnt keeps failing: $err"
    sleep 0.2
  done
  local deadline=$((SECONDS + 20)) how=itself
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    how=TERM
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      how=KILL
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  local rc=0
  wait "$pid" || rc=$?
  unset "_MNT_PID[$mnt]" "_MNT_LOG[$mnt]"
  [[ $how != KILL ]] || fail "rpfs did not exit within 25 s of the unmount (even after SIGTERM); needed SIGKILL"
  # First, so that a leak report (LeakSanitizer then exits non-zero) is shown.
  _sanitizer_check "$log"
  if [[ $how == TERM ]]; then
    echo "warning: rpfs did not exit within 20 s of the unmount; SIGTERM ended it" >&2
  else
    ((rc == 0)) || fail "rpfs exited with status $rc after the unmount (log: $log)"
  fi
  local left=""
  deadline=$((SECONDS + 3))
  while left=$(store_procs "$store") && [[ -n $left ]] && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if [[ -n $left ]]; then
    # shellcheck disable=SC2086
    _describe_procs $left >&2
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null
    fail "QEMU processes of the store still running after rpfs exited"
  fi
}

# crash_rpfs MNT [PIDS...]: kill -9 the given pids (e.g. the
# qemu-storage-daemon) and rpfs, in that order, then detach the dead mount.
crash_rpfs() {
  local mnt=$1
  shift
  local pid=${_MNT_PID[$mnt]:?crash_rpfs: $mnt was not mounted by mount_rpfs}
  kill -KILL "$@" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "_MNT_PID[$mnt]" "_MNT_LOG[$mnt]"
  fusermount3 -u -z "$mnt" 2>/dev/null || true
  # shellcheck disable=SC2016 # expanded by eval
  wait_until 10 "$mnt to be detached" eval '! mountpoint -q "$mnt"'
}

# rpfs_alive MNT: true while the rpfs serving MNT runs.
rpfs_alive() { kill -0 "${_MNT_PID[$1]:?}" 2>/dev/null; }

# Cleanup (also after a failed test): detach the mount and kill whatever is
# left, quietly.
_force_umount() {
  local mnt=$1 pid=${_MNT_PID[$1]:-} store=${_MNT_STORE[$1]:-} i
  if [[ -n $pid ]]; then
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "_MNT_PID[$mnt]" "_MNT_LOG[$mnt]"
  fi
  mountpoint -q "$mnt" 2>/dev/null && fusermount3 -u -z "$mnt" 2>/dev/null
  if [[ -n $store ]]; then
    # shellcheck disable=SC2046
    kill -KILL $(store_procs "$store") 2>/dev/null
  fi
  return 0
}

# ---------------------------------------------------------------- methods and jobs

# call_method FILE PAYLOAD: write PAYLOAD (printf %s: add "\n" yourself if
# wanted) in one write(2); the write must succeed.  Sets RV, JOB and DESC from
# the method file's result line "<ReturnValue> <job-id> <description>".
call_method() {
  local file=$1 payload=$2 err
  if ! err=$({ printf '%s' "$payload" >"$file"; } 2>&1); then
    fail "write to $file failed: $err; result: $(cat "$file" 2>/dev/null || true)"
  fi
  read_result "$file"
}

# read_result FILE: parse the result line of a method file into RV JOB DESC.
read_result() {
  local line
  line=$(cat -- "$1") || fail "cannot read $1"
  read -r RV JOB DESC <<<"$line" || true
  [[ ${RV:-} =~ ^[0-9]+$ && -n ${JOB:-} ]] ||
    fail "$1: expected '<ReturnValue> <job-id> <description>', got '$line'"
}

# method_refused [--as-user] ERRNO RV FILE PAYLOAD: the write of PAYLOAD to
# method FILE fails with ERRNO; the caller's result line gives RV and a job
# whose ReturnValue is RV and whose ErrorDescription is not empty.  Sets JOB.
method_refused() {
  local as=()
  if [[ $1 == --as-user ]]; then
    as=(--as-user)
    shift
  fi
  local errno=$1 rv=$2
  export _F=$3 _P=$4
  # shellcheck disable=SC2016 # expanded by the bash -c that runs it
  assert_fails_with "${as[@]}" "$errno" 'printf "%s" "$_P" > "$_F"'
  if ((${#as[@]})); then
    local line
    line=$(as_user cat "$_F") || fail "cannot read $_F as uid 65534"
    read -r RV JOB DESC <<<"$line" || true
  else
    read_result "$_F"
  fi
  assert_eq "$RV" "$rv" "ReturnValue in the result of $_F"
  assert_file_eq "$MNT/jobs/$JOB/ReturnValue" "$rv"
  [[ -n $(cat "$MNT/jobs/$JOB/ErrorDescription") ]] ||
    fail "job $JOB: empty ErrorDescription for a refused call"
}

# wait_job_done JOBDIR [TIMEOUT]: poll JOBDIR/JobState until 7, 8 or 10.
wait_job_done() {
  local dir=$1 timeout=${2:-300} state=""
  local deadline=$((SECONDS + timeout))
  while :; do
    state=$(cat "$dir/JobState" 2>/dev/null) || state=""
    case $state in 7 | 8 | 10) return 0 ;; esac
    ((SECONDS < deadline)) ||
      fail "$dir not done after ${timeout}s: JobState '$state', status '$(cat "$dir/status" 2>/dev/null || true)'"
    sleep 0.2
  done
}

# job_state JOB: JobState of a job in MNT.
job_state() { cat "$MNT/jobs/$1/JobState"; }

# assert_job_completed JOB: JobState 7, or fail with its ErrorDescription.
assert_job_completed() {
  local dir=$MNT/jobs/$1
  [[ $(cat "$dir/JobState") == 7 ]] ||
    fail "job $1 ended in JobState $(cat "$dir/JobState"): $(cat "$dir/ErrorDescription")"
}

# start_export RPDIR DIR [LINE...]: call ExportReferencePoint (DIR and the
# Key=Value lines, "\n"-terminated); it must start a job (4096).  Sets JOB.
start_export() {
  local rp=$1 payload=$2
  shift 2
  local line
  for line in "$@"; do payload+=$'\n'"$line"; done
  call_method "$rp/ExportReferencePoint" "$payload"$'\n'
  assert_eq "$RV" 4096 "ReturnValue of ExportReferencePoint ($DESC)"
}

# export_rp RPDIR DIR [LINE...]: start_export, wait, require JobState 7.
export_rp() {
  start_export "$@"
  wait_job_done "$MNT/jobs/$JOB"
  assert_job_completed "$JOB"
}

# wait_running JOB EXPORTDIR: wait until an export job runs and its hidden
# temporary directory exists in EXPORTDIR; fail if it ends first (then raise
# RPFS_TEST_BUSY_MB).
wait_running() {
  local job=$1 dir=$2 state deadline=$((SECONDS + 60))
  while :; do
    state=$(job_state "$job")
    case $state in
      7 | 8 | 10) fail "export job $job ended (JobState $state) before the test could act; raise RPFS_TEST_BUSY_MB (now $BUSY_MB)" ;;
    esac
    [[ $state == 4 && -n $(ls -A "$dir") ]] && return 0
    ((SECONDS < deadline)) || fail "export job $job did not start running (JobState $state)"
    sleep 0.02
  done
}

# snapshot DIR: a listing of everything under DIR except the mount MNT, to
# show that a refused call created nothing.
snapshot() {
  find "$1" -mindepth 1 \( -path "${MNT:-/nonexistent}" -prune \) -o -print | sort
}
