#!/bin/bash
# build-initramfs.sh OUTDIR — build the test guest (see README.md here):
#   OUTDIR/vmlinuz             the newest kernel under /boot
#   OUTDIR/initramfs.cpio.gz   busybox, the writer, the virtio modules,
#                              qemu-ga with its libraries, /init, /freeze-hook
#   OUTDIR/writer              the static writer (rebuilt when its sources change)
# Everything comes from installed Debian packages; nothing is downloaded.
# Re-running with unchanged inputs does nothing (OUTDIR/inputs records them).
# Needs root (Debian's /boot/vmlinuz-* is readable by root only).
set -euo pipefail

OUT=${1:?usage: build-initramfs.sh OUTDIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

die() {
  echo "build-initramfs: $*" >&2
  exit 1
}

# need CMD PACKAGE: CMD must exist, else name the Debian package to install.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package $2"
}

need gcc gcc
need cpio cpio
need gzip gzip
need ldd libc-bin
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || die "static libc missing: install the Debian package libc6-dev"
[[ -x /usr/sbin/qemu-ga ]] || die "/usr/sbin/qemu-ga missing: install the Debian package qemu-guest-agent"
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing: install the Debian package busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked: install the Debian package busybox-static"
fi

# The kernel: the highest version under /boot.
KERNEL=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
[[ -n $KERNEL ]] || die "no /boot/vmlinuz-*: install the Debian package linux-image-amd64"
KVER=${KERNEL#vmlinuz-}
KERNEL=/boot/$KERNEL
MODDIR=/lib/modules/$KVER
[[ -r $KERNEL ]] || die "$KERNEL is not readable (run as root)"
[[ -f $MODDIR/modules.dep ]] || die "$MODDIR/modules.dep missing: reinstall the Debian package linux-image-$KVER"

# ---------------------------------------------------------------- modules

# The modules the guest needs; their dependencies come first (modules.dep).
# brd and ext4 (with crc32c, its soft dependency) give qemu-ga a filesystem
# to freeze; button and evdev let /init see the ACPI power button.
WANTED=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  virtio_blk virtio_console brd crc32c_generic ext4 button evdev)
declare -A MOD_PATH=() MOD_SEEN=()
MOD_ORDER=()

# add_module NAME: NAME's dependencies, then NAME, into MOD_ORDER (skipping
# modules built into the kernel).
add_module() {
  local name=$1 line path deps dep
  [[ -z ${MOD_SEEN[$name]:-} ]] || return 0
  MOD_SEEN[$name]=1
  line=$(grep -E "(^|/)(${name}|${name//_/-})\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -n 1) || true
  if [[ -z $line ]]; then
    if grep -qE "(^|/)(${name}|${name//_/-})\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
      return 0 # built in
    fi
    die "kernel module $name not found in $MODDIR (package linux-image-$KVER)"
  fi
  path=${line%%:*}
  deps=${line#*:}
  for dep in $deps; do
    dep=$(basename "$dep")
    dep=${dep%%.ko*}
    add_module "${dep//-/_}"
  done
  MOD_PATH[$name]=$MODDIR/$path
  MOD_ORDER+=("$name")
}
for m in "${WANTED[@]}"; do add_module "$m"; done

# ---------------------------------------------------------------- qemu-ga's libraries

GA_LIBS=()
while read -r lib; do GA_LIBS+=("$lib"); done < <(
  ldd /usr/sbin/qemu-ga | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' | sort -u)
((${#GA_LIBS[@]} > 0)) || die "ldd /usr/sbin/qemu-ga listed no libraries"

# ---------------------------------------------------------------- up to date?

# The writer: rebuilt when missing or older than its sources.
if [[ ! -x $OUT/writer || $HERE/writer.c -nt $OUT/writer || $HERE/pattern.h -nt $OUT/writer ]]; then
  gcc -std=gnu11 -Wall -Wextra -Werror -static -O2 -o "$OUT/writer.tmp" "$HERE/writer.c" ||
    die "cannot build the static writer (packages gcc and libc6-dev)"
  mv -f "$OUT/writer.tmp" "$OUT/writer"
fi

# Every input with its size and mtime; the same list means the same result.
inputs() {
  local f
  for f in "$HERE/build-initramfs.sh" "$KERNEL" "$BUSYBOX" /usr/sbin/qemu-ga "$OUT/writer" \
    "${GA_LIBS[@]}" "${MOD_PATH[@]}"; do
    stat -L -c '%n %s %Y' "$f"
  done
  echo "modules: ${MOD_ORDER[*]}"
}
inputs >"$OUT/inputs.new"
if [[ -f $OUT/initramfs.cpio.gz && -f $OUT/vmlinuz && -f $OUT/inputs ]] &&
  cmp -s "$OUT/inputs" "$OUT/inputs.new"; then
  rm -f "$OUT/inputs.new"
  exit 0
fi

# ---------------------------------------------------------------- vmlinux

# OUTDIR/vmlinux: the bzImage's payload, uncompressed.  QEMU boots such an ELF
# kernel directly (PVH entry), skipping the real-mode setup and the
# decompression, which take ~3 s under TCG.  Optional: vm.sh falls back to
# vmlinuz when it is missing.
elf_complete() { # FILE: an ELF file at least as long as its section headers
  local f=$1 shoff shentsize shnum
  [[ $(head -c 4 "$f" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || return 1
  shoff=$(od -An -tu8 -j 40 -N 8 "$f" | tr -d ' ')
  shentsize=$(od -An -tu2 -j 58 -N 2 "$f" | tr -d ' ')
  shnum=$(od -An -tu2 -j 60 -N 2 "$f" | tr -d ' ')
  (($(stat -c %s "$f") >= shoff + shentsize * shnum))
}
extract_vmlinux() {
  local spec tool magic off
  grep -qx 'CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null || return 1
  for spec in 'xz --single-stream:\xFD7zXZ\x00' 'zstd -q:\x28\xB5\x2F\xFD' 'gzip:\x1F\x8B\x08'; do
    tool=${spec%%:*}
    magic=${spec#*:}
    command -v "${tool%% *}" >/dev/null 2>&1 || continue
    for off in $(LC_ALL=C grep -obUaP "$magic" "$KERNEL" 2>/dev/null | cut -d: -f1 | head -n 4); do
      tail -c +$((off + 1)) "$KERNEL" | $tool -dc >"$OUT/vmlinux.tmp" 2>/dev/null || true
      if elf_complete "$OUT/vmlinux.tmp"; then
        mv -f "$OUT/vmlinux.tmp" "$OUT/vmlinux"
        return 0
      fi
    done
  done
  rm -f "$OUT/vmlinux.tmp"
  return 1
}

# ---------------------------------------------------------------- the tree

ROOT=$OUT/root
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,var,etc,lib/modules,mnt/scratch}
ln -s ../run "$ROOT/var/run"

cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$ROOT/bin/$applet"
done
cp "$OUT/writer" "$ROOT/bin/writer"

# Modules, uncompressed, flat, with the order to load them in.
for m in "${MOD_ORDER[@]}"; do
  src=${MOD_PATH[$m]}
  case $src in
    *.ko) cp "$src" "$ROOT/lib/modules/$m.ko" ;;
    *.ko.xz)
      need xz xz-utils
      xz -dc "$src" >"$ROOT/lib/modules/$m.ko"
      ;;
    *.ko.zst)
      need zstd zstd
      zstd -qdc "$src" >"$ROOT/lib/modules/$m.ko"
      ;;
    *.ko.gz) gzip -dc "$src" >"$ROOT/lib/modules/$m.ko" ;;
    *) die "unknown module format: $src" ;;
  esac
done
printf '%s\n' "${MOD_ORDER[@]}" >"$ROOT/lib/modules/order"

# qemu-ga and every library it loads, at the paths ldd found them at.
cp /usr/sbin/qemu-ga "$ROOT/usr/sbin/qemu-ga"
for lib in "${GA_LIBS[@]}"; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done

# /scratch.img: a 1 MiB ext2 for /init to put on the RAM disk (made here:
# mke2fs in the guest would wait ~1 s for the random pool under TCG).
truncate -s 1M "$ROOT/scratch.img"
"$BUSYBOX" mke2fs -F "$ROOT/scratch.img" >/dev/null 2>&1 || die "busybox mke2fs failed"

# /freeze-hook: qemu-ga runs it with "freeze" before and "thaw" after a
# guest-fsfreeze-*; it quiesces and resumes the writer.
cat >"$ROOT/freeze-hook" <<'EOF'
#!/bin/sh
# qemu-ga fsfreeze hook of the rpfs test guest: freeze = quiesce the writer.
export PATH=/bin
say() { echo "rpfs-guest: hook: $*" >/dev/console; }

# wait_for TEST: poll up to 10 s; false on timeout.
wait_for() {
  i=0
  until eval "$1"; do
    i=$((i + 1))
    [ $i -le 100 ] || return 1
    sleep 0.1
  done
}

pid=$(cat /run/writer.pid 2>/dev/null) || pid=
case "$1" in
  freeze)
    cmdline=" $(cat /proc/cmdline) "
    if [ "${cmdline#* rpfs.hookfail=1 }" != "$cmdline" ]; then
      say "freeze refused (rpfs.hookfail=1)"
      exit 1
    fi
    if [ -z "$pid" ]; then
      say "freeze: no writer running"
      exit 0
    fi
    kill -USR1 "$pid" || { say "freeze: cannot signal the writer"; exit 1; }
    if ! wait_for '[ -e /run/writer.quiesced ]'; then
      say "freeze: the writer did not quiesce within 10 s"
      exit 1
    fi
    say "freeze: writer quiesced"
    ;;
  thaw)
    [ -n "$pid" ] || exit 0
    kill -USR2 "$pid" || { say "thaw: cannot signal the writer"; exit 1; }
    # Wait for the resume, so that a freeze right after this one is seen.
    wait_for '[ ! -e /run/writer.quiesced ]' || say "thaw: the writer did not resume within 10 s"
    say "thaw: writer resumed"
    ;;
esac
exit 0
EOF

# /init: see README.md for the kernel command-line knobs.
cat >"$ROOT/init" <<'EOF'
#!/bin/sh
# /init of the rpfs test guest.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "rpfs-guest: $*"; }

DISKS=2 SLOTS=2048 WRITER=1 # rpfs.hookfail and rpfs.poweroff: see the hook and the end
for arg in $(cat /proc/cmdline); do
  case $arg in
    rpfs.disks=*) DISKS=${arg#*=} ;;
    rpfs.slots=*) SLOTS=${arg#*=} ;;
    rpfs.writer=*) WRITER=${arg#*=} ;;
  esac
done

for m in $(cat /lib/modules/order); do
  case $m in
    brd) args="rd_nr=1 rd_size=1024" ;; # one 1 MiB RAM disk: /dev/ram0
    *) args= ;;
  esac
  insmod /lib/modules/$m.ko $args || say "insmod $m failed"
done

# A small ext2 (driven by ext4) on a RAM disk at /mnt/scratch: without a
# real filesystem guest-fsfreeze-freeze would freeze nothing, return 0 and
# the agent would not stay "frozen" until the thaw as it does in real guests.
if dd if=/scratch.img of=/dev/ram0 bs=64k 2>/dev/null &&
  mount -t ext4 /dev/ram0 /mnt/scratch; then
  echo "rpfs test guest" >/mnt/scratch/hello
else
  say "scratch filesystem failed"
fi

# The disks in the host's order: vm_start gives disk i the serial
# "rpfs-disk<i>"; without such serials, vda, vdb, ... in probe order.
disk_dev() {
  for b in /sys/block/vd*; do
    [ "$(cat "$b/serial" 2>/dev/null)" = "rpfs-disk$1" ] &&
      { echo "/dev/${b##*/}"; return 0; }
  done
  grep -qs '^rpfs-disk' /sys/block/vd*/serial && return 1 # not there yet
  n=$(echo abcdefghijklmnopqrstuvwxyz | cut -c$(($1 + 1)))
  [ -b "/dev/vd$n" ] && echo "/dev/vd$n"
}
DEVS='' MISSING=0
i=0
while [ $i -lt "$DISKS" ]; do
  t=0
  until dev=$(disk_dev $i); do
    t=$((t + 1))
    if [ $t -gt 100 ]; then
      say "disk $i did not appear within 10 s"
      MISSING=1
      break
    fi
    sleep 0.1
  done
  DEVS="$DEVS $dev"
  i=$((i + 1))
done
[ -z "$DEVS" ] || say "disks:$DEVS"

# The guest agent, on the port named org.qemu.guest_agent.0 if there is one.
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ] || continue
  qemu-ga -m virtio-serial -p "/dev/${p##*/}" --fsfreeze-hook=/freeze-hook \
    -t /run -f /run/qemu-ga.pid -l /run/qemu-ga.log -d
  t=0
  while [ ! -s /run/qemu-ga.pid ] && [ $t -lt 100 ]; do t=$((t + 1)); sleep 0.1; done
  if [ -s /run/qemu-ga.pid ] && kill -0 "$(cat /run/qemu-ga.pid)" 2>/dev/null; then
    say "agent up"
  else
    say "agent failed to start"
    cat /run/qemu-ga.log
  fi
done

if [ "$WRITER" != 0 ] && [ -n "$DEVS" ] && [ $MISSING = 0 ]; then
  writer "$SLOTS" $DEVS &
  pid=$!
  t=0
  while [ ! -e /run/writer.running ] && kill -0 $pid 2>/dev/null && [ $t -lt 100 ]; do
    t=$((t + 1))
    sleep 0.1
  done
  if [ -e /run/writer.running ]; then
    echo $pid >/run/writer.pid
  else
    say "writer failed to start"
  fi
fi
# The ACPI power button (QMP system_powerdown): quiesce the writer (header
# CLEAN, disks flushed), then power off.
for e in /sys/class/input/event*; do
  [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] || continue
  (
    dd if="/dev/input/${e##*/}" bs=24 count=1 >/dev/null 2>&1 || exit 0
    say "power button: shutting down"
    if pid=$(cat /run/writer.pid 2>/dev/null) && kill -USR1 "$pid"; then
      t=0
      while [ ! -e /run/writer.quiesced ] && [ $t -lt 100 ]; do
        t=$((t + 1))
        sleep 0.1
      done
    fi
    poweroff -f
  ) &
done

say "ready"
case " $(cat /proc/cmdline) " in
  *" rpfs.poweroff=1 "*) poweroff -f ;; # vm_accel's probe: ready is all it wants
esac

# Stay up (and reap orphans) until powered off or killed.
while :; do
  sleep 3600 &
  wait
done
EOF
chmod 0755 "$ROOT/init" "$ROOT/freeze-hook"

# ---------------------------------------------------------------- archive

(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
  gzip -1 >"$OUT/initramfs.cpio.gz.tmp"
cp "$KERNEL" "$OUT/vmlinuz.tmp"
if ! extract_vmlinux; then
  rm -f "$OUT/vmlinux"
  echo "build-initramfs: no uncompressed vmlinux (boots will be slower)" >&2
fi
mv -f "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
mv -f "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv -f "$OUT/inputs.new" "$OUT/inputs"
rm -rf "$ROOT"
echo "build-initramfs: built $OUT/initramfs.cpio.gz for $KVER (modules: ${MOD_ORDER[*]})"
