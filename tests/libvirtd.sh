# tests/libvirtd.sh — a libvirt daemon for the libvirt tests
# (tests/test-libvirt-*.sh).  Source it after tests/lib.sh; it sources
# tests/vm.sh.
#
#   lv_kit               what every libvirt test needs first: root, the
#                        test guest (vm_kit), and lv_daemon
#   lv_daemon            make sure a daemon answers on qemu:///system.  If
#                        none does, start one: create user and group
#                        libvirt-qemu (if missing), /var/log/libvirt and
#                        /var/run/libvirt, then `virtlogd -d` and
#                        `libvirtd -d` (CI has no systemd).  At the end of
#                        the test it stops exactly the processes it started
#                        and removes the users and groups it created.
#   lv_define NAME DISK.qcow2...
#                        define and start a TCG domain NAME from the test
#                        guest (kernel + initramfs + the pattern writer):
#                        disk i is vd<a+i> with serial rpfs-disk<i>, the
#                        console goes to WORK/NAME.console.log (so vm_seq
#                        and vm_wait_seq work), VM_AGENT=1 adds the guest
#                        agent channel.  Waits for "rpfs-guest: ready".
#                        The domain is destroyed and undefined at the end.
#   lv_virsh ARGS...     virsh -c qemu:///system ARGS
#   lv_checkpoints NAME  the domain's checkpoint names, sorted, one a line
#
# Choice (docs/testing.md, "libvirt tests"): the domains use libvirt's
# defaults (DAC labels, dynamic_ownership on), as users' domains do:
# libvirt chowns the images, kernel, initramfs and console log to
# libvirt-qemu while the domain runs, and the scratch files of backup jobs
# too; the test only makes the directories searchable for that user.
# shellcheck shell=bash
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "${BASH_SOURCE[0]}")/vm.sh"

LV_URI=qemu:///system
declare -ga _LV_STARTED=()

lv_virsh() { virsh -q -c "$LV_URI" "$@"; }

_lv_answers() { virsh -c "$LV_URI" version >/dev/null 2>&1; }

_lv_stop_daemons() {
  local pid
  for pid in "${_LV_STARTED[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  _LV_STARTED=()
}

# _lv_start_one PROG PIDFILE: start PROG -d, record its pid.
_lv_start_one() {
  local prog=$1 pidfile=$2 i
  rm -f "$pidfile"
  "$prog" -d -p "$pidfile" || fail "$prog -d failed"
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidfile ]] && break
    sleep 0.1
  done
  [[ -s $pidfile ]] || fail "$prog wrote no pid file $pidfile"
  _LV_STARTED+=("$(cat "$pidfile")")
}

# libvirt starts each QEMU in a private mount namespace, a copy of the
# host's mounts taken as the domain starts and slave to / : a domain started
# while rpfs is mounted keeps the rpfs mount alive after fusermount3 -u
# unless the unmount propagates, i.e. unless the mount point lies in a
# shared mount (systemd makes / shared; this container does not).  So
# TMPROOT, where the tests mount rpfs, becomes a shared bind mount.
_lv_shared_tmproot() {
  findmnt -n -o PROPAGATION --target "$TMPROOT" | grep -q shared && return 0
  mount --bind "$TMPROOT" "$TMPROOT"
  mount --make-shared "$TMPROOT"
  cleanup_add "umount -l $(printf %q "$TMPROOT") 2>/dev/null || true"
}

lv_kit() {
  requires_root
  vm_kit
  lv_daemon
}

lv_daemon() {
  requires virsh libvirtd virtlogd
  _lv_shared_tmproot
  if _lv_answers; then
    return 0
  fi
  if ! getent group libvirt-qemu >/dev/null; then
    groupadd --system libvirt-qemu
    cleanup_add "groupdel libvirt-qemu 2>/dev/null || true"
  fi
  if ! getent passwd libvirt-qemu >/dev/null; then
    useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
    # Runs before the groupdel above (last added first).
    cleanup_add "userdel libvirt-qemu 2>/dev/null || true"
  fi
  mkdir -p /var/log/libvirt/qemu /var/run/libvirt /var/lib/libvirt/qemu
  cleanup_add _lv_stop_daemons
  pgrep -x virtlogd >/dev/null || _lv_start_one virtlogd /var/run/libvirt/virtlogd-rpfs-test.pid
  _lv_start_one libvirtd /var/run/libvirt/libvirtd-rpfs-test.pid
  local i
  for ((i = 0; i < 100; i++)); do
    _lv_answers && break
    sleep 0.2
  done
  _lv_answers || fail "libvirtd started but does not answer on $LV_URI"
  echo "libvirt: started virtlogd/libvirtd (${_LV_STARTED[*]})"
}

# The qemu user libvirt runs domains as (Debian: libvirt-qemu).
lv_qemu_user() {
  local u
  for u in libvirt-qemu qemu; do
    getent passwd "$u" >/dev/null && { echo "$u"; return 0; }
  done
  echo root
}

_lv_cleanup_domain() {
  virsh -c "$LV_URI" destroy "$1" >/dev/null 2>&1 || true
  virsh -c "$LV_URI" undefine "$1" --checkpoints-metadata >/dev/null 2>&1 ||
    virsh -c "$LV_URI" undefine "$1" >/dev/null 2>&1 || true
}

# lv_xml NAME DISK.qcow2...: the domain XML on stdout (LV_UUID: the uuid of
# the domain it redefines).
lv_xml() {
  local name=$1 i dev devs="" agent="" letters=abcdefghijklmnopqrstuvwxyz
  shift
  for i in $(seq 0 $(($# - 1))); do
    dev=vd${letters:i:1}
    devs+="
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='$(realpath "${@:i+1:1}")'/>
      <target dev='$dev' bus='virtio'/>
      <serial>rpfs-disk$i</serial>
    </disk>"
  done
  if [[ ${VM_AGENT:-0} == 1 ]]; then
    agent="
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"
  fi
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>${LV_UUID:+
  <uuid>$LV_UUID</uuid>}
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$VM_KERNEL</kernel>
    <initrd>$VM_INITRD</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 rpfs.disks=$# rpfs.slots=${VM_SLOTS:-2048} ${VM_CMDLINE:-}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>$devs
    <serial type='file'>
      <source path='$WORK/$name.console.log'/>
      <target port='0'/>
    </serial>$agent
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# lv_define NAME DISK.qcow2...: define the domain and start it (not with
# LV_NO_START=1: it stays shut off).
lv_define() {
  local name=$1 user
  shift
  vm_kit
  user=$(lv_qemu_user)
  # libvirt's QEMU runs as $user: it reads the kit, writes the images and
  # the console log.
  chmod 0755 "$WORK" "$VM_KIT"
  local f d
  for f in "$@"; do           # search permission down to each image
    d=$(dirname "$(realpath "$f")")
    while [[ $d == "$WORK"/* ]]; do
      chmod o+x "$d"
      d=$(dirname "$d")
    done
  done
  chmod 0644 "$VM_KERNEL" "$VM_INITRD"
  chown "$user:" "$@"
  touch "$WORK/$name.console.log"
  chown "$user:" "$WORK/$name.console.log"
  lv_xml "$name" "$@" >"$WORK/$name.xml"
  cleanup_add "_lv_cleanup_domain $(printf %q "$name")"
  lv_virsh define "$WORK/$name.xml" >/dev/null || fail "virsh define $name failed"
  [[ ${LV_NO_START:-0} == 1 ]] || lv_start "$name"
}

# lv_start NAME: start the defined domain and wait for the guest.
lv_start() {
  local name=$1 start=$SECONDS
  : >"$WORK/$name.console.log"
  lv_virsh start "$name" >/dev/null || fail "virsh start $name failed"
  local deadline=$((SECONDS + ${VM_BOOT_TIMEOUT:-120}))
  until grep -qa 'rpfs-guest: ready' "$WORK/$name.console.log" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      tail -n 30 "$WORK/$name.console.log" >&2
      fail "domain $name: no 'rpfs-guest: ready' within ${VM_BOOT_TIMEOUT:-120}s"
    fi
    sleep 0.2
  done
  echo "libvirt: domain $name ready after $((SECONDS - start))s"
}

# lv_guest_write NAME BYTE OFFSET LENGTH: write LENGTH bytes of BYTE at
# OFFSET of the running domain's first disk through its device (QEMU's
# block layer: libvirt's bitmaps and backup job see it), then flush.
lv_guest_write() {
  local dev out cmd
  dev=$(lv_virsh dumpxml "$1" | sed -n "s/.*<alias name='\(virtio-disk[0-9]*\)'.*/\1/p" | head -n 1)
  [[ -n $dev ]] || fail "no virtio disk alias in $1's live XML"
  for cmd in "write -P $2 $3 $4" flush; do
    out=$(lv_virsh qemu-monitor-command "$1" --hmp \
      "qemu-io -d /machine/peripheral/$dev/virtio-backend \"$cmd\"")
    ! grep -qi 'error\|not' <<<"$out" || fail "qemu-io $cmd: $out"
  done
}

lv_checkpoints() {
  lv_virsh checkpoint-list "$1" --name | sed '/^$/d' | sort
}

# lv_store: new_store, searchable by the user libvirt's QEMU runs as (the
# backup job's NBD socket is made in STORE/run/lv<N>/).
lv_store() {
  new_store
  chmod o+x "$(dirname "$STORE")" "$STORE"
}
