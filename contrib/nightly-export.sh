#!/bin/bash
# nightly-export.sh — an example of driving rpfs from a script (cron, a
# systemd timer): make a reference point named by the date, export it, wait
# for the job without polling, and keep only the newest reference points.
#
#   nightly-export.sh [-k KEEP] [-p PREFIX] [-d] MOUNTPOINT SYSTEM BACKUPDIR
#
#   MOUNTPOINT  where rpfs is mounted (e.g. /run/rpfs/prod)
#   SYSTEM      the virtual system (a directory under MOUNTPOINT)
#   BACKUPDIR   absolute; each run exports into BACKUPDIR/<reference point>/
#   -k KEEP     after a successful export, destroy (rmdir) the oldest
#               reference points named PREFIX* beyond the newest KEEP
#               (KEEP >= 1; default: destroy nothing)
#   -p PREFIX   name prefix of the reference points this script makes and
#               prunes (default "nightly-"); others are never touched
#   -d          keep the new reference point's point-in-time data after the
#               export.  By default the export is made with
#               KeepAssociatedData=false: once it is complete rpfs drops that
#               data (which grows with every write to the disks until then),
#               and the change tracking stays, so the reference point still
#               serves as tomorrow's base
#
# The first run (or any run that finds no usable base) makes a full export.
# Later runs export the changes since the newest earlier PREFIX* reference
# point whose change tracking is intact and whose export is still in
# BACKUPDIR; the new images then name that export's images as backing files
# (relative paths), so keep BACKUPDIR's directories together.
#
# The job is followed with inotifywait on its directory: rpfs raises an
# event each time JobState or PercentComplete changes.  A generous timeout
# re-reads the state in case an event was lost.
#
# Exit status: 0 the export completed; 1 the export job ended in Exception
# (its ErrorDescription is logged); 2 usage error; 3 anything else (the
# reference point could not be made, the call was refused, the job was
# terminated, the mount went away).
set -euo pipefail

PREFIX=nightly-
KEEP=0
KEEP_DATA=0
PROG=$(basename "$0")

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROG" "$*"; }
die() {
  log "error: $*" >&2
  exit "${2:-3}"
}
usage() {
  echo "usage: $PROG [-k KEEP] [-p PREFIX] [-d] MOUNTPOINT SYSTEM BACKUPDIR" >&2
  exit 2
}

while getopts k:p:dh opt; do
  case $opt in
    k) KEEP=$OPTARG ;;
    p) PREFIX=$OPTARG ;;
    d) KEEP_DATA=1 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
(($# == 3)) || usage
MNT=${1%/} SYS=$2 BACKUP=${3%/}
[[ $KEEP =~ ^[0-9]+$ ]] || die "-k takes a number, not '$KEEP'" 2
[[ $PREFIX =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad -p prefix '$PREFIX'" 2
[[ $BACKUP == /* ]] || die "BACKUPDIR must be an absolute path" 2
command -v inotifywait >/dev/null || die "inotifywait is missing (Debian: inotify-tools)"
SYSDIR=$MNT/$SYS
RPS=$SYSDIR/referencepoints
[[ -d $RPS ]] || die "$SYSDIR is not a virtual system of an rpfs mount"
mkdir -p "$BACKUP"

# The PREFIX* reference points, oldest first (the date in the name sorts).
ours() {
  local d
  for d in "$RPS/$PREFIX"*; do
    [[ -d $d ]] && basename "$d"
  done
  return 0
}

# call METHODFILE LINE...: write the request (one line each), then read the
# caller's result line "<ReturnValue> <job-id> <description>" into RV, JOB,
# DESC.  A refused call fails the write with the errno of its ReturnValue;
# the result line says why.
call() {
  local file=$1 line
  shift
  printf '%s\n' "$@" >"$file" 2>/dev/null || true
  line=$(cat "$file")
  read -r RV JOB DESC <<<"$line" || true
  [[ ${RV:-} =~ ^[0-9]+$ ]] || die "$file: unexpected result '$line'"
}

# wait_job JOBDIR: block until the job ends.  Logs the status when the
# state changes and every 10 % of progress.
wait_job() {
  local dir=$1 state status pct logged=-1 last="" line
  # One watch for the whole job, set up before the first look at the state,
  # so no change between the look and the wait can be missed.
  coproc WATCH { exec inotifywait -m -e close_write,attrib --format %f "$dir" 2>&1; }
  while read -r -t 10 -u "${WATCH[0]}" line; do
    [[ $line == "Watches established." ]] && break
  done
  while :; do
    state=$(cat "$dir/JobState" 2>/dev/null) || {
      kill "$WATCH_PID" 2>/dev/null
      die "cannot read $dir/JobState: is rpfs still mounted?"
    }
    status=$(cat "$dir/status")
    pct=$(cat "$dir/PercentComplete")
    if [[ $state != "$last" ]] || ((pct >= logged + 10)); then
      log "job ${dir##*/}: $status"
      last=$state
      logged=$pct
    fi
    case $state in 7 | 8 | 10) break ;; esac
    # Sleep until the next event (or look again after 5 minutes anyway).
    if ! read -r -t 300 -u "${WATCH[0]}" line; then
      # EOF: inotifywait is gone (the mount went away); timeout: look again.
      kill -0 "$WATCH_PID" 2>/dev/null || die "lost the watch on $dir: is rpfs still mounted?"
    fi
  done
  kill "$WATCH_PID" 2>/dev/null || true
  wait "$WATCH_PID" 2>/dev/null || true
  JOBSTATE=$state
}

# ---- 1. the new reference point
NAME=$PREFIX$(date -u +%Y%m%d-%H%M%S)
mapfile -t OLDER < <(ours)
call "$SYSDIR/CreateReferencePoint" "$NAME"
[[ $RV == 0 ]] || die "CreateReferencePoint $NAME failed ($RV): $DESC"
log "created reference point $SYS/$NAME (job $JOB)"

# ---- 2. full or differential?
BASE=""
for ((i = ${#OLDER[@]} - 1; i >= 0; i--)); do
  b=${OLDER[i]}
  tracking=$(cat "$RPS/$b/ChangeTracking" 2>/dev/null) || continue
  if [[ $tracking != intact ]]; then
    log "not using $b as base: ChangeTracking: $tracking"
  elif [[ ! -d $BACKUP/$b/$SYS ]]; then
    log "not using $b as base: its export $BACKUP/$b/$SYS is gone"
  else
    BASE=$b
    break
  fi
done

# ---- 3. export and wait
REQ=("$BACKUP/$NAME")
[[ -z $BASE ]] || REQ+=("BaseReferencePoint=$BASE")
((KEEP_DATA)) || REQ+=("KeepAssociatedData=false")
call "$RPS/$NAME/ExportReferencePoint" "${REQ[@]}"
[[ $RV == 4096 ]] || die "ExportReferencePoint of $NAME refused ($RV): $DESC"
log "exporting $NAME into $BACKUP/$NAME/$SYS (${BASE:+differential against }${BASE:-full}), job $JOB"
wait_job "$MNT/jobs/$JOB"
case $JOBSTATE in
  7) log "export of $NAME completed in $(cat "$MNT/jobs/$JOB/ElapsedTime")" ;;
  10)
    log "export of $NAME FAILED (ErrorCode $(cat "$MNT/jobs/$JOB/ErrorCode")): $(cat "$MNT/jobs/$JOB/ErrorDescription")" >&2
    exit 1
    ;;
  *) die "export of $NAME ended in JobState $JOBSTATE (terminated)" ;;
esac
(cd "$BACKUP/$NAME/$SYS" && sha256sum --quiet -c SHA256SUMS) ||
  die "sha256sum -c failed in $BACKUP/$NAME/$SYS"

# ---- 4. housekeeping
if ((KEEP > 0)); then
  mapfile -t ALL < <(ours)
  for ((i = 0; i + KEEP < ${#ALL[@]}; i++)); do
    if rmdir "$RPS/${ALL[i]}" 2>/dev/null; then
      log "destroyed reference point ${ALL[i]} (keeping the newest $KEEP)"
    else
      # A refused rmdir leaves a job saying why; the reference point's job
      # link points to it.
      log "could not destroy ${ALL[i]}: $(cat "$RPS/${ALL[i]}/job/ErrorDescription" 2>/dev/null || echo "rmdir failed")" >&2
    fi
  done
fi
exit 0
