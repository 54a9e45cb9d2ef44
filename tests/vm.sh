# tests/vm.sh — a tiny Linux guest for the tests that need a running VM
# (see tests/guest/README.md).  Source it AFTER tests/lib.sh:
#     source "$(dirname "$0")/lib.sh"
#     source "$(dirname "$0")/vm.sh"
#
#   vm_kit                  build the guest kit once (tests/work/guest-kit);
#                           sets VM_KERNEL, VM_INITRD, VM_CHECK (the checker)
#   vm_accel                kvm or tcg (probed once, cached); sets VM_ACCEL
#   vm_start NAME DISK.qcow2... [-- QEMU ARGS...]
#                           boot a guest writing the pattern to the disks and
#                           wait for "rpfs-guest: ready".  Disk i is the
#                           qcow2 node named after its file (basename without
#                           .qcow2, which must be a valid node name: letters,
#                           digits, '-', '_', '.', at most 31 characters,
#                           starting with a letter), drive id drive-<node>,
#                           device id dev-<node>, file node NAME-file<i>.
#                           Sets VM_PID, VM_QMP (for rpfs), VM_QMP2 (for the
#                           test), VM_QGA (guest agent, VM_AGENT=1 only),
#                           VM_CONSOLE (the serial console log).
#   vm_seq NAME             the newest seq the writer printed (0 if none)
#   vm_wait_seq NAME N [TIMEOUT]  wait until vm_seq NAME >= N
#   vm_qmp SOCK JSON        one QMP command; prints the reply line, status 1
#                           when it is an error (or no reply came)
#   vm_qga SOCK JSON        one guest-agent command, likewise
#   vm_write NODE BYTE OFFSET LENGTH
#                           write BYTE over the range of the disk whose node
#                           is NODE, through the guest's device (HMP qemu-io
#                           on drive-NODE), as the guest's own writes go
#   vm_kill NAME            SIGKILL and wait
#   vm_quit NAME            QMP quit on the test's monitor, wait for the exit
#   vm_powerdown NAME [TIMEOUT]  QMP system_powerdown: the guest quiesces the
#                           writer (header CLEAN, disks flushed) and powers
#                           off; waits for QEMU to exit
#
# Knobs (environment): VM_AGENT=1 adds the guest agent channel; VM_SLOTS
# (default 2048) slots per disk; VM_CMDLINE extra kernel arguments (e.g.
# rpfs.writer=0, rpfs.hookfail=1); RPFS_VM_ACCEL=kvm|tcg overrides the probe;
# VM_BOOT_TIMEOUT (default 120 s).
# Needs qemu-system-x86_64 (qemu-system-x86), socat, and for the kit gcc,
# libc6-dev, cpio, busybox-static, qemu-guest-agent, linux-image-amd64.
# vm_start runs QEMU as a child of the test's shell: call it directly, not
# inside $(...).
# shellcheck shell=bash

VM_KIT=$REPO/tests/work/guest-kit
declare -gA _VM_PID=()

# _vm_locked CMD...: run CMD under the kit's lock (tests may run in parallel).
_vm_locked() {
  mkdir -p "$VM_KIT"
  (
    flock 9
    "$@"
  ) 9>"$VM_KIT/lock"
}

_vm_build_kit() {
  local log=$VM_KIT/build.log
  if ! bash "$REPO/tests/guest/build-initramfs.sh" "$VM_KIT" >"$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  local src=$REPO/tests/guest/check-pattern.c hdr=$REPO/tests/guest/pattern.h
  if [[ ! -x $VM_KIT/check-pattern || $src -nt $VM_KIT/check-pattern || $hdr -nt $VM_KIT/check-pattern ]]; then
    gcc -std=gnu11 -Wall -Wextra -Werror -O2 -o "$VM_KIT/check-pattern.tmp" "$src" &&
      mv -f "$VM_KIT/check-pattern.tmp" "$VM_KIT/check-pattern"
  fi
  # A new kernel or initramfs may boot differently: probe the accelerator again.
  if [[ -f $VM_KIT/accel && $VM_KIT/initramfs.cpio.gz -nt $VM_KIT/accel ]]; then
    rm -f "$VM_KIT/accel"
  fi
}

vm_kit() {
  [[ -z ${VM_CHECK:-} ]] || return 0
  requires qemu-system-x86_64 socat
  _vm_locked _vm_build_kit || fail "building the guest kit failed (tests/guest/build-initramfs.sh)"
  # The uncompressed kernel when the kit has one (boots ~3 s faster under TCG).
  VM_KERNEL=$VM_KIT/vmlinux
  [[ -f $VM_KERNEL ]] || VM_KERNEL=$VM_KIT/vmlinuz
  VM_INITRD=$VM_KIT/initramfs.cpio.gz
  VM_CHECK=$VM_KIT/check-pattern
  export VM_KERNEL VM_INITRD VM_CHECK
}

# _vm_probe_kvm: does a KVM guest reach "ready" within 20 s?  The guest
# powers itself off once ready (rpfs.poweroff=1).  QEMU's output is kept in
# the kit's accel.log.
_vm_probe_kvm() {
  local con=$VM_KIT/accel.console
  rm -f "$con"
  # In a subshell whose stderr is dropped: bash would report an aborting QEMU.
  (timeout -s KILL 20 qemu-system-x86_64 -nodefaults -no-user-config -M q35 \
    -accel kvm -cpu max -m 256 -smp 1 -display none -serial "file:$con" \
    -no-reboot -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
    -append "console=ttyS0 quiet panic=-1 rpfs.disks=0 rpfs.writer=0 rpfs.poweroff=1" \
    >"$VM_KIT/accel.log" 2>&1 || :) 2>/dev/null
  grep -qa 'rpfs-guest: ready' "$con" 2>/dev/null
}

_vm_decide_accel() {
  [[ -s $VM_KIT/accel ]] && return 0
  local verdict=tcg
  if [[ -r /dev/kvm && -w /dev/kvm ]] && _vm_probe_kvm; then
    verdict=kvm
  fi
  echo "$verdict" >"$VM_KIT/accel"
}

vm_accel() {
  if [[ -z ${VM_ACCEL:-} ]]; then
    if [[ -n ${RPFS_VM_ACCEL:-} ]]; then
      VM_ACCEL=$RPFS_VM_ACCEL
    else
      vm_kit
      _vm_locked _vm_decide_accel || fail "probing the accelerator failed"
      VM_ACCEL=$(cat "$VM_KIT/accel")
    fi
  fi
  echo "vm: accelerator $VM_ACCEL"
}

# vm_start NAME DISK.qcow2... [-- QEMU ARGS...]
vm_start() {
  local name=$1
  shift
  local disks=() extra=()
  while (($# > 0)); do
    if [[ $1 == -- ]]; then
      shift
      extra=("$@")
      break
    fi
    disks+=("$1")
    shift
  done
  [[ -z ${_VM_PID[$name]:-} ]] || fail "vm_start: a VM named $name is already running"
  vm_kit
  [[ -n ${VM_ACCEL:-} ]] || vm_accel

  local args=() i node path cpu=()
  for i in "${!disks[@]}"; do
    path=$(realpath -s -- "${disks[i]}")
    node=$(basename "$path" .qcow2)
    [[ $node =~ ^[A-Za-z][A-Za-z0-9._-]{0,30}$ ]] ||
      fail "vm_start: '$node' (from ${disks[i]}) is not a valid QEMU node name"
    # -drive, not -blockdev: the device's BlockBackend then has a name
    # (drive-<node>), so the test can write as the guest does, through any
    # filter rpfs puts on top (vm_write).
    args+=(-drive "if=none,id=drive-$node,format=qcow2,node-name=$node,file.node-name=$name-file$i,file.filename=${path//,/,,}"
      -device "virtio-blk-pci,drive=drive-$node,id=dev-$node,serial=rpfs-disk$i")
  done

  VM_QMP=$WORK/$name.qmp
  VM_QMP2=$WORK/$name.qmp2
  VM_QGA=
  VM_CONSOLE=$WORK/$name.console.log
  local sock
  for sock in "$VM_QMP" "$VM_QMP2" "$WORK/$name.qga"; do
    ((${#sock} < 108)) || fail "vm_start: socket path too long for a Unix socket: $sock"
  done
  if [[ ${VM_AGENT:-0} == 1 ]]; then
    VM_QGA=$WORK/$name.qga
    args+=(-device "virtio-serial-pci,id=vser0"
      -chardev "socket,path=$VM_QGA,server=on,wait=off,id=qga0"
      -device "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0")
  fi
  [[ $VM_ACCEL != kvm ]] || cpu=(-cpu max)

  rm -f "$VM_CONSOLE" "$VM_QMP" "$VM_QMP2" "$WORK/$name.qga" "$WORK/$name.pid"
  local start=$SECONDS
  qemu-system-x86_64 -name "$name" -nodefaults -no-user-config -M q35 \
    -accel "$VM_ACCEL" "${cpu[@]}" -m 256 -smp 1 -display none -no-reboot \
    -serial "file:$VM_CONSOLE" \
    -qmp "unix:$VM_QMP,server=on,wait=off" \
    -qmp "unix:$VM_QMP2,server=on,wait=off" \
    -pidfile "$WORK/$name.pid" \
    -kernel "$VM_KERNEL" -initrd "$VM_INITRD" \
    -append "console=ttyS0 quiet panic=-1 rpfs.disks=${#disks[@]} rpfs.slots=${VM_SLOTS:-2048} ${VM_CMDLINE:-}" \
    "${args[@]}" "${extra[@]}" >"$WORK/$name.qemu.log" 2>&1 &
  VM_PID=$!
  _VM_PID[$name]=$VM_PID
  cleanup_add "_vm_cleanup $(printf %q "$name")"

  local timeout=${VM_BOOT_TIMEOUT:-120}
  local deadline=$((SECONDS + timeout))
  until grep -qa 'rpfs-guest: ready' "$VM_CONSOLE" 2>/dev/null; do
    if ! kill -0 "$VM_PID" 2>/dev/null; then
      _vm_tail "$name"
      fail "vm $name: QEMU exited before the guest was ready"
    fi
    if ((SECONDS >= deadline)); then
      _vm_tail "$name"
      fail "vm $name: no 'rpfs-guest: ready' on the console within ${timeout}s"
    fi
    sleep 0.2
  done
  if grep -qaE 'rpfs-guest: (.* failed|.*did not appear)|rpfs-writer: error' "$VM_CONSOLE"; then
    _vm_tail "$name"
    fail "vm $name: the guest reported an error while booting"
  fi
  echo "vm: $name ready after $((SECONDS - start))s ($VM_ACCEL)"
}

_vm_tail() {
  echo "---- QEMU output of vm $1:" >&2
  tail -n 20 "$WORK/$1.qemu.log" >&2 2>/dev/null
  echo "---- console of vm $1 (last lines):" >&2
  tail -n 40 "$WORK/$1.console.log" >&2 2>/dev/null
}

_vm_cleanup() {
  local pid=${_VM_PID[$1]:-}
  [[ -n $pid ]] || return 0
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "_VM_PID[$1]"
  return 0
}

# vm_seq NAME: the newest seq on NAME's console (progress lines are ~0.5 s
# apart, so this lags the writer by up to that much).
vm_seq() {
  local seq
  seq=$(grep -aoE 'rpfs-writer: (quiesced |resumed )?seq=[0-9]+' "$WORK/$1.console.log" 2>/dev/null |
    tail -n 1 | sed 's/.*seq=//') || true
  echo "${seq:-0}"
}

# vm_wait_seq NAME N [TIMEOUT]
vm_wait_seq() {
  local name=$1 want=$2 timeout=${3:-60}
  local deadline=$((SECONDS + timeout))
  until (($(vm_seq "$name") >= want)); do
    if ((SECONDS >= deadline)); then
      _vm_tail "$name"
      fail "vm $name: writer not at seq $want within ${timeout}s (at $(vm_seq "$name"))"
    fi
    sleep 0.2
  done
}

# _vm_session SOCK GREETING SYNC MATCH JSON: talk to a QMP or guest-agent
# socket through socat.  GREETING=1 reads QMP's greeting first; SYNC is a
# command sent first, whose reply (the first line holding MATCH) is awaited
# before JSON is sent.  Prints the reply
# to JSON (events skipped); status 1 on an error reply or no reply in
# VM_QMP_TIMEOUT (default 30) seconds.
_vm_session() {
  local sock=$1 greeting=$2 sync=$3 match=$4 cmd=$5 line reply="" rc=1
  local t=${VM_QMP_TIMEOUT:-30}
  [[ -S $sock ]] || {
    echo "no socket $sock" >&2
    return 1
  }
  local in out pid
  # socat's stdout -> fd $out, our writes -> fd $in -> socat's stdin.
  local dir
  dir=$(mktemp -d "$WORK/.qmp.XXXX")
  mkfifo "$dir/to" "$dir/from"
  socat -t "$t" - "UNIX-CONNECT:$sock" <"$dir/to" >"$dir/from" 2>"$dir/err" &
  pid=$!
  exec {in}>"$dir/to" {out}<"$dir/from"
  if ((greeting)); then
    read -r -t "$t" line <&"$out" || line=""
  fi
  echo "$sync" >&"$in"
  while read -r -t "$t" line <&"$out"; do
    [[ $line != *"$match"* ]] || break
  done
  echo "$cmd" >&"$in"
  while read -r -t "$t" line <&"$out"; do
    line=${line%$'\r'}
    if [[ $line == *'"return"'* ]]; then
      reply=$line rc=0
      break
    elif [[ $line == *'"error"'* ]]; then
      reply=$line
      break
    fi
  done
  exec {in}>&- {out}<&-
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [[ -n $reply ]] || reply="no reply from $sock to $cmd $(cat "$dir/err")"
  rm -rf "$dir"
  echo "$reply"
  return "$rc"
}

vm_qmp() {
  _vm_session "$1" 1 '{"execute":"qmp_capabilities"}' '"return"' "$2"
}

# vm_qga SOCK JSON: a guest-sync with a fresh id first flushes whatever an
# earlier client left in the channel.
vm_qga() {
  local id=$((RANDOM * 32768 + RANDOM))
  _vm_session "$1" 0 "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":$id}}" \
    "\"return\": $id}" "$2"
}

vm_kill() {
  local pid=${_VM_PID[$1]:?vm_kill: no VM named $1}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "_VM_PID[$1]"
}

vm_quit() {
  local name=$1 pid=${_VM_PID[$1]:?vm_quit: no VM named $1} i
  vm_qmp "$WORK/$name.qmp2" '{"execute":"quit"}' >/dev/null ||
    fail "vm $name: QMP quit failed"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "vm $name: QEMU still running 30 s after quit"
  wait "$pid" 2>/dev/null || true
  unset "_VM_PID[$1]"
}

vm_powerdown() {
  local name=$1 timeout=${2:-60} pid=${_VM_PID[$1]:?vm_powerdown: no VM named $1}
  vm_qmp "$WORK/$name.qmp2" '{"execute":"system_powerdown"}' >/dev/null ||
    fail "vm $name: QMP system_powerdown failed"
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      _vm_tail "$name"
      fail "vm $name: QEMU still running ${timeout}s after system_powerdown"
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  unset "_VM_PID[$1]"
}

# vm_write NODE BYTE OFFSET LENGTH (see the top of this file)
vm_write() {
  local reply
  reply=$(vm_qmp "$VM_QMP2" "{\"execute\": \"human-monitor-command\",
    \"arguments\": {\"command-line\":
    \"qemu-io drive-$1 \\\"write -P $2 $3 $4\\\"\"}}") ||
    fail "vm_write $*: $reply"
  # HMP answers "" (or qemu-io's report) on success, an error text if not;
  # the callers check the data themselves.
  ! grep -Eqi 'error|failed' <<<"$reply" || fail "vm_write $*: $reply"
}
