#!/bin/bash
# export-rate-limit (configuration.md): an export reads the point-in-time
# disks no faster than the cap, over all its disks; PercentComplete moves
# through it; a cancel does not wait for the paced reads; the export is
# still exact.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum

RATE_MIB=8
mk_store vm1 sda:256M sdb:16M
write_pattern "$(img_of vm1 sda)" 0x5a 64M 40M
echo "export-rate-limit = ${RATE_MIB}M   # MiB/s" >>"$STORE/systems/vm1.conf"
for d in sda sdb; do raw_of "$(img_of vm1 $d)" "$WORK/$d.raw"; done
# Data to read: 2 MiB + 40 MiB on sda, 1 MiB on sdb (default_fill).
DATA_MIB=43
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"

step "a capped export of $DATA_MIB MiB at $RATE_MIB MiB/s"
E=$(new_dir e1)
t0=$(date +%s%N)
start_export "$RP" "$E"
J=$MNT/jobs/$JOB
seen=()
while :; do
  state=$(cat "$J/JobState")
  case $state in 7 | 8 | 10) break ;; esac
  p=$(cat "$J/PercentComplete")
  [[ " ${seen[*]} " == *" $p "* ]] || seen+=("$p")
  sleep 0.2
done
t1=$(date +%s%N)
assert_job_completed "$JOB"
ms=$(((t1 - t0) / 1000000))
# Each read waits for its slot: the last read (at most 2 MiB) starts no
# earlier than (DATA - 2 MiB) / RATE after the first.
min_ms=$(((DATA_MIB - 2) * 1000 / RATE_MIB))
echo "   took $ms ms (at least $min_ms ms at the cap); PercentComplete seen: ${seen[*]}"
((ms >= min_ms)) || fail "the export took $ms ms: faster than $RATE_MIB MiB/s allows ($min_ms ms)"
((${#seen[@]} >= 5)) || fail "PercentComplete took only ${#seen[@]} values while the capped export ran: ${seen[*]}"

step "... and holds exactly the disks at rp1"
(cd "$E/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"
for d in sda sdb; do
  qemu-img compare -q -f raw -F qcow2 "$WORK/$d.raw" "$E/vm1/disks/$d.qcow2" ||
    fail "the capped export of $d differs from the disk at rp1"
done

step "a cancel ends a capped export at once, not when its reads would be done"
E2=$(new_dir e2)
start_export "$RP" "$E2"
J=$MNT/jobs/$JOB
sleep 1
assert_file_eq "$J/JobState" 4
t0=$(date +%s%N)
echo 4 >"$J/RequestStateChange"
wait_job_done "$J" 60
t1=$(date +%s%N)
assert_file_eq "$J/JobState" 8
ms=$(((t1 - t0) / 1000000))
left_ms=$(((DATA_MIB - 2) * 1000 / RATE_MIB - 1000))
echo "   ended $ms ms after the cancel ($left_ms ms of paced reads were left)"
((ms < left_ms)) || fail "the cancel took $ms ms: it waited for the paced reads"
assert_empty_dir "$E2"

umount_rpfs "$MNT"
pass
