#!/bin/bash
# The floor of a running VM's export (issue 11): a full export of a `qmp`
# system against the two tools that read the same point-in-time NBD export
# (rp.<seq>.0 in the VM's own QEMU) straight into a file:
#   qemu-img convert -O qcow2   (8 coroutines, the tool to beat)
#   nbdcopy                     (4 connections, many requests in flight)
# and the same full export of a copy of the same disk offline (rpfs's own
# qemu-storage-daemon), so both paths are compared in one run.  The guest is
# the idle test guest (tests/guest/, no writer); its disk is 8 GiB with
# 2 GiB of incompressible data; the export runs at export-nice = 0 and
# export-rate-limit = 0.  BENCH_RUNS rounds (default 3), each: the offline
# export, the running VM's export, convert, nbdcopy; prints each time, the
# export's phases (copy, then hash and sync), and the medians and ranges of
# the times and of the per-round ratios.
#   bench/vm-export-floor.sh   (as root; BENCH_FLOOR_GIB=2 of data,
#                               BENCH_RUNS=3)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPO=$BREPO
WORK=$BWORK
fail() { die "$*"; }
skip() { die "cannot run: $*"; }
requires ss nbdinfo
cleanup_add() { bcleanup_add "$1"; }
# shellcheck source-path=SCRIPTDIR source=../tests/vm.sh
source "$BREPO/tests/vm.sh"
vm_kit
vm_accel
GIB=${BENCH_FLOOR_GIB:-2}

RUNS=${BENCH_RUNS:-3}

STORE=$BWORK/store
mkdir -p "$STORE/systems" "$BWORK/images"
IMG=$BWORK/images/f1-sda.qcow2
IMG0=$BWORK/images/f0-sda.qcow2
say "an 8 GiB disk with $GIB GiB of random data (and a copy for the offline system)"
head -c "$((GIB * 1024))M" /dev/urandom >"$BWORK/data.raw"
truncate -s 8G "$BWORK/data.raw"
qemu-img convert -f raw -O qcow2 "$BWORK/data.raw" "$IMG"
qemu-img convert -f raw -O qcow2 "$BWORK/data.raw" "$IMG0"
rm -f "$BWORK/data.raw"
settle

# export_once SYSTEM N: a full export of a new reference point bN of SYSTEM;
# EXPORT_SECS its seconds, EXPORT_COPY until qemu-nbd was last seen (the
# copy; the rest is the hash and sync).
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
  settle
}

# tool_once NAME URI: qemu-img convert -O qcow2 or nbdcopy of URI into a
# file, with its sync; TOOL_SECS.
tool_once() {
  local t0 out=$BWORK/tool.out
  settle
  t0=$(now)
  case $1 in
    convert) qemu-img convert -O qcow2 "$2" "$out" ;;
    nbdcopy) nbdcopy "$2" "$out" ;;
  esac
  sync -f "$out"
  TOOL_SECS=$(secs "$t0" "$(now)")
  rm -f "$out"
}

# median V...: the median of the values.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }

# The offline system (rpfs's own storage daemon, on the copy) and the
# running VM's system in one store, so the rounds interleave in one mount.
printf 'disk sda = %s\nexport-nice = 0\nexport-rate-limit = 0\n' "$IMG0" \
  >"$STORE/systems/f0.conf"
printf 'qmp = %s\ndisk sda = %s\nnode sda = f1-sda\nexport-nice = 0\nexport-rate-limit = 0\n' \
  "$BWORK/f1.qmp" "$IMG" >"$STORE/systems/f1.conf"
export VM_CMDLINE="rpfs.writer=0"
vm_start f1 "$IMG"
mount_rpfs
say "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
OFF=() VM=() CONV=() NBDC=() R_CONV=() R_OFF=()
for ((r = 1; r <= RUNS; r++)); do
  export_once f0 "$r"
  OFF+=("$EXPORT_SECS")
  say "round $r: offline export $EXPORT_SECS s (copy until ~$EXPORT_COPY s)"
  export_once f1 "$r"
  VM+=("$EXPORT_SECS")
  say "round $r: running-VM export $EXPORT_SECS s (copy until ~$EXPORT_COPY s)"
  # The same reference point's export in the VM's QEMU, read by the tools.
  seq=$(sed -n 's/^Sequence = //p' "$STORE/state/f1/rp/b$r/record" 2>/dev/null || true)
  [[ -n $seq ]] || seq=$r
  # The VM's NBD socket (the storage daemon of f0 serves another one).
  sock=$(ss -xlpn | awk -v p="pid=$VM_PID," 'index($0, p) && $5 ~ /\.nbd$/ { print $5; exit }')
  [[ -n $sock ]] || die "the VM's NBD socket was not found (ss -xlp)"
  uri="nbd+unix:///rp.$seq.0?socket=$sock"
  nbdinfo "$uri" >/dev/null || die "cannot read $uri"
  tool_once convert "$uri"
  CONV+=("$TOOL_SECS")
  tool_once nbdcopy "$uri"
  NBDC+=("$TOOL_SECS")
  say "round $r: qemu-img convert -O qcow2 of rp.$seq.0 ${CONV[-1]} s, nbdcopy $TOOL_SECS s (load $(cut -d' ' -f1 /proc/loadavg))"
  R_CONV+=("$(ratio "${VM[-1]}" "${CONV[-1]}")")
  R_OFF+=("$(ratio "${OFF[-1]}" "${CONV[-1]}")")
  rmdir "$MNT/f0/referencepoints/b$r" "$MNT/f1/referencepoints/b$r"
done
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
umount_rpfs
vm_quit f1

say "medians of $RUNS rounds (range): running-VM export $(median "${VM[@]}") s ($(spread "${VM[@]}")), offline export $(median "${OFF[@]}") s ($(spread "${OFF[@]}")), qemu-img convert $(median "${CONV[@]}") s ($(spread "${CONV[@]}")), nbdcopy $(median "${NBDC[@]}") s ($(spread "${NBDC[@]}"))"
result "running-VM full export / qemu-img convert of its NBD export (median of rounds)" "$(median "${R_CONV[@]}") ($(spread "${R_CONV[@]}"))" "<= 1.0"
result "offline full export / that qemu-img convert (median of rounds)" "$(median "${R_OFF[@]}") ($(spread "${R_OFF[@]}"))"
result "running-VM full export / nbdcopy of its NBD export (medians)" "$(ratio "$(median "${VM[@]}")" "$(median "${NBDC[@]}")")"
result "running-VM full export / the same export offline (medians)" "$(ratio "$(median "${VM[@]}")" "$(median "${OFF[@]}")")"
