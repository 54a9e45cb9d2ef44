#!/bin/bash
# Cancelling an export (interface.md 3, 5.3): RequestStateChange "4" or
# "Terminate" on a running export job ends it as Terminated (JobState 8) and
# leaves nothing in the export directory.  That holds too for an archive
# export of a mostly empty 128 GiB disk cancelled while its data is written
# and only the SHA-256 of its holes (over a minute) is left: the cancel
# does not wait for it.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

new_store
add_system vm1 sda:1G
add_system vm2 sda:128G
fill_busy "$(img_of vm1 sda)"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"

for how in 4 Terminate; do
  step "echo $how > RequestStateChange on a running export"
  E=$(new_dir "cancel-$how")
  start_export "$RP" "$E"
  J=$MNT/jobs/$JOB
  state=$(cat "$J/JobState")
  case $state in
    2 | 3 | 4) ;;
    *) fail "export job in JobState $state right after the call; raise RPFS_TEST_BUSY_MB (now $BUSY_MB)" ;;
  esac
  assert_file_eq "$J/Cancellable" true
  echo "$how" >"$J/RequestStateChange"
  wait_job_done "$J" 60
  step "... the job ends Terminated (8) and the export directory is empty"
  assert_file_eq "$J/JobState" 8
  assert_empty_dir "$E"
done

step "Format=tar of a mostly empty 128 GiB disk, cancelled while it hashes the holes"
RP2=$MNT/vm2/referencepoints/rp1
mkdir "$RP2"
E=$(new_dir cancel-holes)
start_export "$RP2" "$E" Format=tar
J=$MNT/jobs/$JOB
sleep 2
# Its 2 MiB of data are long written; the hash of 128 GiB of zeros is not.
assert_file_eq "$J/JobState" 4
echo Terminate >"$J/RequestStateChange"
wait_job_done "$J" 15
assert_file_eq "$J/JobState" 8
assert_empty_dir "$E"

step "the reference point still exports after the cancels"
E=$(new_dir after)
export_rp "$RP" "$E"
(cd "$E/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"

umount_rpfs "$MNT"
pass
