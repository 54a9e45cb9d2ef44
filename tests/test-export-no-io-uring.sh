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

step "the first export tries io_uring, then completes with the thread pool"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1"
assert_eq "$(tr '\n' ' ' <"$WORK/aio.log")" "io_uring threads " "qemu-nbd's --aio modes"
raw_of "$E1/vm1/disks/sda.qcow2" "$WORK/e1.raw"
cmp "$WORK/sda-at-rp1.raw" "$WORK/e1.raw" || fail "the export differs from the disk at rp1"
(cd "$E1/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed"
LOG=${_MNT_LOG[$MNT]}
assert_eq "$(grep -c 'could not write with io_uring' "$LOG")" 1 "lines about io_uring in rpfs's log"

step "a second export goes straight to the thread pool"
E2=$(new_dir e2)
export_rp "$RPS/rp1" "$E2"
assert_eq "$(tr '\n' ' ' <"$WORK/aio.log")" "io_uring threads threads " "qemu-nbd's --aio modes"
raw_of "$E2/vm1/disks/sda.qcow2" "$WORK/e2.raw"
cmp "$WORK/sda-at-rp1.raw" "$WORK/e2.raw" || fail "the second export differs from the disk at rp1"
assert_eq "$(grep -c 'could not write with io_uring' "$LOG")" 1 "lines about io_uring in rpfs's log"
umount_rpfs "$MNT"
pass
