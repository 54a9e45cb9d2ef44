#!/bin/bash
# inotify (interface.md 7): a watch on a job directory (or on <rp>/job/) sees
# JobState and PercentComplete change during an export; a watch on
# <system>/referencepoints/ sees reference points appear and go, whether made
# with mkdir/rmdir or with the CreateReferencePoint method.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires inotifywait

new_store
add_system vm1 sda:1G
fill_busy "$(img_of vm1 sda)"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints

# watch NAME PATH: start inotifywait -m on PATH, events to WORK/NAME.events as
# "EVENTS FILE" lines; returns once the watch is set.
watch() {
  local name=$1 path=$2
  inotifywait -m --format '%e %f' -o "$WORK/$name.events" "$path" 2>"$WORK/$name.err" &
  local pid=$!
  cleanup_add "kill $pid 2>/dev/null"
  wait_until 10 "the inotify watch on $path" grep -q 'Watches established' "$WORK/$name.err"
}

# saw NAME ERE: an event line of watch NAME matches ERE (waits up to 10 s).
saw() {
  local name=$1 re=$2 deadline=$((SECONDS + 10))
  until grep -qE -- "$re" "$WORK/$name.events"; do
    ((SECONDS < deadline)) ||
      fail "no inotify event /$re/ on watch $name; got: $(tr '\n' ';' <"$WORK/$name.events")"
    sleep 0.1
  done
}

step "watch referencepoints/: mkdir and rmdir"
watch rps "$RPS"
mkdir "$RPS/rpA"
saw rps '^(CREATE|MOVED_TO)(,ISDIR)? rpA$'
rmdir "$RPS/rpA"
saw rps '^(DELETE|MOVED_FROM)(,ISDIR)? rpA$'

step "watch referencepoints/: echo rpB > CreateReferencePoint, then rmdir"
echo rpB >"$MNT/vm1/CreateReferencePoint"
saw rps '^(CREATE|MOVED_TO)(,ISDIR)? rpB$'
rmdir "$RPS/rpB"
saw rps '^(DELETE|MOVED_FROM)(,ISDIR)? rpB$'

step "watch a running export's job directory, directly and through rp1/job/"
mkdir "$RPS/rp1"
E=$(new_dir e1)
start_export "$RPS/rp1" "$E"
watch job "$MNT/jobs/$JOB/"
watch rpjob "$RPS/rp1/job/"
state=$(job_state "$JOB")
case $state in
  7 | 8 | 10) fail "the export ended (JobState $state) before the watches were set; raise RPFS_TEST_BUSY_MB (now $BUSY_MB)" ;;
esac
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"

step "... they saw JobState and PercentComplete change"
saw job ' JobState$'
saw job ' PercentComplete$'
saw rpjob ' JobState$'
echo "   events: $(sort -u "$WORK/job.events" | tr '\n' ';')"

umount_rpfs "$MNT"
pass
