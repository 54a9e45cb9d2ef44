#!/bin/bash
# nightly-stream.sh — an example: each night, stream a compressed backup of
# a system to another host over ssh, staging nothing on local disk
# (docs/reference.md section 9, "Streamed exports").
#
#   nightly-stream.sh [-p PREFIX] [-f FORMAT] MOUNTPOINT SYSTEM HOST REMOTEDIR
#
#   MOUNTPOINT  where rpfs is mounted (e.g. /run/rpfs/prod)
#   SYSTEM      the virtual system (a directory under MOUNTPOINT)
#   HOST        ssh destination (user@host); it needs only sh and cat
#   REMOTEDIR   directory on HOST; each run writes
#               REMOTEDIR/<SYSTEM>-<reference point>.<FORMAT> and its .sha256
#   -p PREFIX   name prefix of the reference points (default "nightly-")
#   -f FORMAT   tar, tar.gz, tar.xz or tar.zst (default tar.zst)
#
# The first run streams a full backup; later runs a differential against
# the newest earlier PREFIX* reference point (its overlays name no backing
# file: restore with tar -xSf, then qemu-img rebase -u onto the unpacked
# base, as reference.md "Restoring an archive export" shows).  Each run
# drops the point-in-time data of the new reference point once the stream
# completed (KeepAssociatedData=false): the change tracking stays for
# tomorrow's differential.
#
# The remote file is written under a temporary name and renamed only when
# the stream ended complete: rpfs fails the read (and so cat, and ssh) of a
# stream that did not complete, so a cut-short backup never gets the final
# name.  Exit status: 0 done; 1 the stream or the transfer failed (the job's
# ErrorDescription is logged); 2 usage error.
set -euo pipefail

PREFIX=nightly-
FORMAT=tar.zst
usage() { echo "usage: $0 [-p PREFIX] [-f FORMAT] MOUNTPOINT SYSTEM HOST REMOTEDIR" >&2; exit 2; }
while getopts p:f: o; do
  case $o in
    p) PREFIX=$OPTARG ;;
    f) FORMAT=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
(($# == 4)) || usage
MNT=$1 SYS=$2 HOST=$3 RDIR=$4
case $FORMAT in tar | tar.gz | tar.xz | tar.zst) ;; *) usage ;; esac
RPS=$MNT/$SYS/referencepoints
[[ -d $RPS ]] || { echo "$0: no system $SYS under $MNT" >&2; exit 2; }

# The newest earlier reference point of ours with intact tracking: the base.
base=""
for rp in $(ls -1 "$RPS" | grep "^$PREFIX" | sort); do
  [[ $(cat "$RPS/$rp/ChangeTracking") == intact ]] && base=$rp
done
NAME=$PREFIX$(date -u +%Y%m%dT%H%M%SZ)
mkdir "$RPS/$NAME"
echo "$base" >"$RPS/$NAME/ExportSettingData/BaseReferencePoint"
echo false >"$RPS/$NAME/ExportSettingData/KeepAssociatedData"

OUT=$SYS-$NAME.$FORMAT
echo "$0: streaming $SYS/$NAME (${base:+differential from $base}${base:-full}) to $HOST:$RDIR/$OUT"
# tee computes the checksum on the way; the remote side renames on success.
sum=$(mktemp)
trap 'rm -f "$sum"' EXIT
if cat "$RPS/$NAME/export.$FORMAT" |
  tee >(sha256sum | sed "s/-\$/$OUT/" >"$sum") |
  ssh "$HOST" "cat > '$RDIR/.$OUT.part' && mv '$RDIR/.$OUT.part' '$RDIR/$OUT'"; then
  sleep 0.2   # the process substitution writes the sum
  ssh "$HOST" "cat > '$RDIR/$OUT.sha256'" <"$sum"
  echo "$0: done: $(cat "$RPS/$NAME/job/status")"
else
  echo "$0: failed: $(cat "$RPS/$NAME/job/status" 2>/dev/null)" >&2
  ssh "$HOST" "rm -f '$RDIR/.$OUT.part'" || true
  exit 1
fi
