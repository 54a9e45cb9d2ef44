#!/bin/bash
# The qemu-nbd that writes an export's image uses io_uring where it can
# (target.h).  Where it cannot (a kernel or seccomp policy that refuses
# io_uring, a QEMU built without it), qemu-nbd exits at once: the export
# still completes, with qemu-nbd's thread pool, rpfs says so once in its
# log, and later exports do not try io_uring again.  Here a qemu-nbd ahead
# of the real one in PATH refuses --aio=io_uring the way QEMU does.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum

mk_store vm1 sda:32M
write_pattern "$(img_of vm1 sda)" 0x5a 4M 3M
raw_of "$(img_of vm1 sda)" "$WORK/sda-at-rp1.raw"
BIN=$WORK/bin
mkdir -p "$BIN"
REAL=$(command -v qemu-nbd)
cat >"$BIN/qemu-nbd" <<WRAP
#!/bin/bash
for a in "\$@"; do
  if [[ \$a == --aio=io_uring ]]; then
    echo io_uring >>"$WORK/aio.log"
    echo "qemu-nbd: Failed to blk_new_open: Unable to use io_uring: Operation not permitted" >&2
    exit 1
  fi
  [[ \$a == --aio=* ]] && echo "\${a#--aio=}" >>"$WORK/aio.log"
done
exec "$REAL" "\$@"
WRAP
chmod 0755 "$BIN/qemu-nbd"
MNT=$TMPROOT/mnt
OLDPATH=$PATH
export PATH=$BIN:$PATH
mount_rpfs "$STORE" "$MNT"
export PATH=$OLDPATH
RPS=$MNT/vm1/referencepoints
mkdir "$RPS/rp1"

LOG=${_MNT_LOG[$MNT]}
# export_checked N MODES: export rp1 to a new directory eN; qemu-nbd must
# have been started with MODES (--aio values, in order, since the mount)
# and the image must hold the disk at rp1.
export_checked() {
  local e
  e=$(new_dir "e$1")
  export_rp "$RPS/rp1" "$e"
  assert_eq "$(tr '\n' ' ' <"$WORK/aio.log")" "$2" "qemu-nbd's --aio modes"
  raw_of "$e/vm1/disks/sda.qcow2" "$WORK/e$1.raw"
  cmp "$WORK/sda-at-rp1.raw" "$WORK/e$1.raw" || fail "export $1 differs from the disk at rp1"
  (cd "$e/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c of export $1 failed"
  assert_eq "$(grep -c 'could not write with io_uring' "$LOG")" 1 "lines about io_uring in rpfs's log"
}

step "the first export tries io_uring, then completes with the thread pool"
export_checked 1 "io_uring threads "

step "a second export goes straight to the thread pool"
export_checked 2 "io_uring threads threads "
umount_rpfs "$MNT"
pass
