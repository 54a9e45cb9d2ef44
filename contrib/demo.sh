#!/bin/bash
# rpfs demo: a virtual system of two qcow2 disks, two reference points, a
# full and a differential export, and the proof that the backup chain holds
# the disks exactly as they were.  `sudo make demo` runs it after installing
# what is missing and building rpfs.
#
#   contrib/demo.sh                 demo in /var/tmp/rpfs-demo
#   RPFS_DEMO_DIR=/some/dir contrib/demo.sh
#
# Everything lives in the demo directory: store/ (the definition and rpfs's
# state), images/ (the disks), mnt/ (the mount), backup/ (the exports),
# check/ (scratch for the comparison).  The mount is LEFT MOUNTED at the end
# so you can look around; the last lines say how to unmount it.  Running the
# demo again unmounts the previous demo and starts afresh.  Needs no stdin.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RPFS=${RPFS:-$REPO/rpfs}
DIR=${RPFS_DEMO_DIR:-/var/tmp/rpfs-demo}
MARK=.rpfs-demo # marks a directory this script made (and may remove)

die() {
  echo "demo: $*" >&2
  exit 1
}

# say TEXT: a heading.  run 'CMD': show CMD (as typed in $DIR), then run it.
say() { printf '\n## %s\n' "$*"; }
run() {
  printf '$ %s\n' "$1"
  eval "$1"
}

# ---------------------------------------------------------------- checks

[[ $DIR == /* && $DIR != *[[:space:]]* ]] ||
  die "RPFS_DEMO_DIR must be an absolute path without blanks, not '$DIR'"
[[ -x $RPFS ]] || die "$RPFS not found: build it first (make), or run: sudo make demo"
for c in qemu-img qemu-io qemu-storage-daemon qemu-nbd fusermount3 findmnt \
  flock sha256sum cmp; do
  command -v "$c" >/dev/null 2>&1 || die "'$c' is missing: run  sudo make deps"
done
[[ -c /dev/fuse ]] || die "/dev/fuse is missing: run  sudo make deps"
if ((EUID != 0)) && ! grep -qs '^user_allow_other' /etc/fuse.conf; then
  die "-o allow_other needs root (or user_allow_other in /etc/fuse.conf): run  sudo make demo"
fi

# ---------------------------------------------------------------- a fresh start

# A previous demo may still be mounted: unmount it and wait until its rpfs
# has shut down (it holds the store's lock until its QEMU processes are
# stopped and the bitmaps written).
if findmnt -rn --mountpoint "$DIR/mnt" >/dev/null 2>&1; then
  echo "demo: unmounting the previous demo at $DIR/mnt"
  for ((i = 0; i < 10; i++)); do
    fusermount3 -u "$DIR/mnt" 2>/dev/null && break
    sleep 0.3
  done
  ! findmnt -rn --mountpoint "$DIR/mnt" >/dev/null 2>&1 ||
    die "cannot unmount $DIR/mnt (is a shell or a program still using it?)"
fi
if [[ -e $DIR/store/state/lock ]]; then
  for ((i = 0; i < 300; i++)); do
    flock -n "$DIR/store/state/lock" true && break
    sleep 0.1
  done
  flock -n "$DIR/store/state/lock" true ||
    die "the previous rpfs of $DIR/store did not exit within 30 s"
fi
if [[ -e $DIR ]]; then
  [[ -d $DIR ]] || die "$DIR exists and is not a directory"
  if [[ ! -e $DIR/$MARK && -n $(ls -A "$DIR") ]]; then
    die "$DIR is not empty and was not made by this demo; set RPFS_DEMO_DIR to another directory"
  fi
  rm -rf "$DIR"
fi
mkdir -p "$DIR"/{store/systems,images,mnt,backup,check}
: >"$DIR/$MARK"
cd "$DIR"

echo "rpfs demo in $DIR"

# ---------------------------------------------------------------- the system

say "A virtual system 'demo': two qcow2 disks with some data (qemu-io writes)"
qemu-img create -q -f qcow2 images/demo-sda.qcow2 1G
qemu-img create -q -f qcow2 images/demo-sdb.qcow2 512M
qemu-io -f qcow2 -c 'write -P 0x11 0 64M' -c 'write -P 0x12 256M 64M' \
  images/demo-sda.qcow2 >/dev/null
qemu-io -f qcow2 -c 'write -P 0x21 0 32M' images/demo-sdb.qcow2 >/dev/null
cat >store/systems/demo.conf <<EOF
# The virtual system of the rpfs demo: two disks, no running VM.
disk sda = $DIR/images/demo-sda.qcow2
disk sdb = $DIR/images/demo-sdb.qcow2
EOF
run "cat store/systems/demo.conf"

say "Mount it (rpfs detaches once the mount is ready)"
run "$RPFS --store $DIR/store -o allow_other $DIR/mnt"
run "ls -l mnt mnt/demo mnt/demo/disks"

say "mkdir creates a reference point: change tracking and point-in-time data of both disks"
run "mkdir mnt/demo/referencepoints/rp1"
run "ls -l mnt/demo/referencepoints/rp1"
run "(cd mnt/demo/referencepoints/rp1 && grep -d skip . *)"

say "Write to the current disk; rp1 keeps the content as it was"
run "head -c 16M /dev/urandom | dd of=mnt/demo/disks/sda bs=1M seek=512 conv=notrunc status=none"
run "printf 'written after rp1' | dd of=mnt/demo/disks/sdb bs=1M seek=100 conv=notrunc status=none"
run "cmp mnt/demo/disks/sda mnt/demo/referencepoints/rp1/disks/sda || true"

say "A second reference point, through the method file this time"
run "echo rp2 > mnt/demo/CreateReferencePoint"
run "cat mnt/demo/CreateReferencePoint"

# wait_job JOBDIR: print the job's status each time it changes, until the
# job ends; fail unless it completed.
wait_job() {
  local dir=$1 state status last="" deadline=$((SECONDS + 600))
  printf '$ cat %s/status    # until the job ends\n' "$dir"
  while :; do
    state=$(cat "$dir/JobState")
    status=$(cat "$dir/status")
    [[ $status == "$last" ]] || echo "$status"
    last=$status
    case $state in
      7) return 0 ;;
      8 | 10) die "the job ended: $status" ;;
    esac
    ((SECONDS < deadline)) || die "the job did not end within 600 s"
    sleep 0.1
  done
}

say "Full export of rp1 into $DIR/backup/day1"
run "echo $DIR/backup/day1 > mnt/demo/referencepoints/rp1/ExportReferencePoint"
run "cat mnt/demo/referencepoints/rp1/ExportReferencePoint"
wait_job mnt/demo/referencepoints/rp1/job

say "Differential export of rp2 against rp1 into $DIR/backup/day2"
run "printf '%s\n' $DIR/backup/day2 BaseReferencePoint=rp1 > mnt/demo/referencepoints/rp2/ExportReferencePoint"
run "cat mnt/demo/referencepoints/rp2/ExportReferencePoint"
wait_job mnt/demo/referencepoints/rp2/job
run "(cd mnt/demo/referencepoints/rp2/job && grep . JobType JobState ElapsedTime ExportDirectory ExportedDisks)"

say "The exports"
run "ls -l backup/day1/demo backup/day1/demo/disks backup/day2/demo/disks"
run "(cd backup/day1/demo && sha256sum -c SHA256SUMS)"
run "(cd backup/day2/demo && sha256sum -c SHA256SUMS)"
run "qemu-img info backup/day2/demo/disks/sda.qcow2"

say "The chain day1 <- day2 is each disk exactly as it was at rp2"
for d in sda sdb; do
  run "qemu-img convert -O raw backup/day2/demo/disks/$d.qcow2 check/$d-rp2.raw"
  run "cmp check/$d-rp2.raw mnt/demo/referencepoints/rp2/disks/$d && echo '$d: identical'" ||
    die "backup/day2/demo/disks/$d.qcow2 does not hold $d as it was at rp2"
done
rm -f check/*.raw

cat <<EOF

## Done.  rpfs stays mounted, so you can look around:
    a reference point:    ls $DIR/mnt/demo/referencepoints/rp2
    the method calls:     ls $DIR/mnt/jobs
    the exports:          ls -R $DIR/backup
    the definition:       cat $DIR/store/systems/demo.conf
    QEMU's messages:      cat $DIR/store/log/demo.log
Unmount it (rpfs then stops its qemu-storage-daemon and exits):
    fusermount3 -u $DIR/mnt
EOF
