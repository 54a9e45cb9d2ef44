#!/bin/bash
# export-nice (configuration.md): an export is background work.  Its threads
# and the qemu-nbd that writes its images run at the system's export-nice
# value (19 unless the definition says otherwise); rpfs's other threads and
# qemu-storage-daemon keep rpfs's own priority (0 here).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires ps

mk_store vm1 sda:256M
write_pattern "$(img_of vm1 sda)" 0x5a 64M 40M
# A cap, so that the export runs for seconds while the test looks.
echo "export-rate-limit = 8M" >>"$STORE/systems/vm1.conf"
MNT=$TMPROOT/mnt

# nbd_child PID: the qemu-nbd that rpfs PID started, if any (prints it).
nbd_child() {
  local c
  # shellcheck disable=SC2013 # pids, separated by spaces
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [[ $(cat "/proc/$c/comm" 2>/dev/null) == qemu-nbd ]] && echo "$c" && return 0
  done
  return 1
}
# threads_at PID NICE: how many threads of PID run at NICE.
threads_at() { ps -L -o ni= -p "$1" | awk -v n="$2" '$1 == n { c++ } END { print c + 0 }'; }
# shellcheck disable=SC2317 # called through wait_until
none_at() { [[ $(threads_at "$1" "$2") == 0 ]]; }

# check_export NICE: export a new reference point and check, while it runs,
# who runs at NICE and who at 0; then that the export's threads are gone.
N=0
check_export() {
  local want=$1 pid nbd qsd
  N=$((N + 1))
  mkdir "$MNT/vm1/referencepoints/rp$N"
  pid=${_MNT_PID[$MNT]}
  start_export "$MNT/vm1/referencepoints/rp$N" "$(new_dir "e$N")"
  wait_until 20 "the export's qemu-nbd" nbd_child "$pid" >/dev/null
  nbd=$(nbd_child "$pid")
  assert_eq "$(ps -o ni= -p "$nbd" | tr -d ' ')" "$want" "nice value of the export's qemu-nbd"
  # The export thread and its copy workers (4).
  local n
  n=$(threads_at "$pid" "$want")
  ((n >= 5)) || fail "$n threads of rpfs run at nice $want during the export, expected at least 5 (the export thread and 4 copy workers)"
  ((want == 0)) || (($(threads_at "$pid" 0) >= 1)) ||
    fail "no thread of rpfs is left at nice 0: the export changed the whole process"
  for qsd in $(qsd_pids "$STORE"); do
    assert_eq "$(ps -o ni= -p "$qsd" | tr -d ' ')" 0 "nice value of qemu-storage-daemon"
  done
  echo "   export $JOB: qemu-nbd and $n threads of rpfs at nice $want"
  wait_job_done "$MNT/jobs/$JOB" 60
  assert_job_completed "$JOB"
  ((want == 0)) || wait_until 10 "the export's threads to end" none_at "$pid" "$want"
}

step "by default an export runs at nice 19"
mount_rpfs "$STORE" "$MNT"
check_export 19
umount_rpfs "$MNT"

step "export-nice = 7 in the definition: the export runs at nice 7"
echo "export-nice = 7" >>"$STORE/systems/vm1.conf"
mount_rpfs "$STORE" "$MNT"
check_export 7
umount_rpfs "$MNT"
pass
