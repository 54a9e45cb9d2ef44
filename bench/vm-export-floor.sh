#!/bin/bash
# The floor of a running VM's export (issue 11): a full export of a `qmp`
# system against the two tools that read the same point-in-time NBD export
# (rp.<seq>.0 in the VM's own QEMU) straight into a file:
#   qemu-img convert -O qcow2   (8 coroutines, the tool to beat)
#   nbdcopy                     (4 connections, many requests in flight)
# and the same full export of the same disk offline (rpfs's own
# qemu-storage-daemon), so both paths are compared in one run.  The guest is
# the idle test guest (tests/guest/, no writer); its disk is 8 GiB with
# 2 GiB of incompressible data; the export runs at export-nice = 0 and
# export-rate-limit = 0.  Prints each time, the ratios, and the export's
# phases (copy, then hash and sync).
#   bench/vm-export-floor.sh        (as root; BENCH_FLOOR_GIB=2 of data)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPO=$BREPO
WORK=$BWORK
fail() { die "$*"; }
skip() { die "cannot run: $*"; }
requires() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "command '$c' not found"; done
}
cleanup_add() { bcleanup_add "$1"; }
# shellcheck source-path=SCRIPTDIR source=../tests/vm.sh
source "$BREPO/tests/vm.sh"
vm_kit
vm_accel
GIB=${BENCH_FLOOR_GIB:-2}

STORE=$BWORK/store
mkdir -p "$STORE/systems" "$BWORK/images"
IMG=$BWORK/images/f1-sda.qcow2
say "an 8 GiB disk with $GIB GiB of random data"
head -c "$((GIB * 1024))M" /dev/urandom >"$BWORK/data.raw"
truncate -s 8G "$BWORK/data.raw"
qemu-img convert -f raw -O qcow2 "$BWORK/data.raw" "$IMG"
rm -f "$BWORK/data.raw"
settle

# export_once SYSTEM: a full export of a new reference point of SYSTEM;
# prints its seconds; EXPORT_COPY / EXPORT_SEAL: its phases.
export_once() {
  local rpdir=$MNT/$1/referencepoints/b$2 out=$BWORK/out.$1.$2 t0
  mkdir "$rpdir"
  settle
  t0=$(now)
  start_export "$rpdir" "$out"
  wait_job "$JOB"
  EXPORT_SECS=$(secs "$t0" "$JOB_DONE")
  EXPORT_COPY=$(secs "$t0" "${PHASE_LAST[qemu-nbd]:-$t0}")
  rm -rf "$out"
}

# ---- offline: rpfs's own storage daemon
printf 'disk sda = %s\nexport-nice = 0\nexport-rate-limit = 0\n' "$IMG" \
  >"$STORE/systems/f0.conf"
mount_rpfs
export_once f0 1
OFF=$EXPORT_SECS
say "offline export: $OFF s (copy until ~$EXPORT_COPY s)"
rmdir "$MNT/f0/referencepoints/b1"
umount_rpfs
rm -f "$STORE/systems/f0.conf"

# ---- the running VM
printf 'qmp = %s\ndisk sda = %s\nnode sda = f1-sda\nexport-nice = 0\nexport-rate-limit = 0\n' \
  "$BWORK/f1.qmp" "$IMG" >"$STORE/systems/f1.conf"
export VM_CMDLINE="rpfs.writer=0"
vm_start f1 "$IMG"
mount_rpfs
export_once f1 1
VM=$EXPORT_SECS
say "running-VM export: $VM s (copy until ~$EXPORT_COPY s)"
# The same reference point's export in the VM's QEMU, read by the tools.
seq=$(sed -n 's/^Sequence = //p' "$STORE/state/f1/rp/b1/record" 2>/dev/null || true)
[[ -n $seq ]] || seq=$(ls "$MNT/f1/referencepoints" | wc -l)
SOCK=$(ls "$STORE"/run/*.nbd | head -n 1)
URI="nbd+unix:///rp.$seq.0?socket=$SOCK"
nbdinfo "$URI" >/dev/null || die "cannot read $URI"
t0=$(now)
qemu-img convert -O qcow2 "$URI" "$BWORK/convert.qcow2"
sync -f "$BWORK/convert.qcow2"
CONVERT=$(secs "$t0" "$(now)")
rm -f "$BWORK/convert.qcow2"
say "qemu-img convert -O qcow2 of rp.$seq.0: $CONVERT s"
t0=$(now)
nbdcopy "$URI" "$BWORK/nbdcopy.raw"
sync -f "$BWORK/nbdcopy.raw"
NBDCOPY=$(secs "$t0" "$(now)")
rm -f "$BWORK/nbdcopy.raw"
say "nbdcopy of rp.$seq.0: $NBDCOPY s"
rmdir "$MNT/f1/referencepoints/b1"
umount_rpfs
vm_quit f1

result "running-VM full export / qemu-img convert of its NBD export" "$(ratio "$VM" "$CONVERT")" "<= 1.0"
result "running-VM full export / nbdcopy of its NBD export" "$(ratio "$VM" "$NBDCOPY")"
result "running-VM full export / the same export offline" "$(ratio "$VM" "$OFF")"
