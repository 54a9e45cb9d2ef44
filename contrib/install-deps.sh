#!/bin/bash
# Install the Debian packages rpfs needs to build, test and demo, and make sure
# /dev/fuse is there.  Idempotent: installs only what is missing, runs
# apt-get update only then, never prompts, needs no stdin.  Prints nothing when
# everything is already in place.
#
#   contrib/install-deps.sh        (as root; `make deps` runs it)
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libfuse3-dev fuse3
  libarchive-dev
  check libsubunit-dev
  libnbd-dev libnbd-bin
  libjansson-dev
  libssl-dev
  # the libvirt backend (libvirt-domain = NAME): libvirt's C API, libxml2
  # for its XML; the tests start their own libvirtd (tests/libvirtd.sh);
  # virtnbdbackup is the peer of bench/peer-virtnbdbackup.sh
  libvirt-dev libxml2-dev libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients virtnbdbackup
  qemu-utils qemu-system-common
  # make fuzz: libFuzzer targets (tests/fuzz/)
  clang libclang-rt-14-dev
  inotify-tools attr util-linux coreutils
  # running-VM tests and benchmarks: a real guest (tests/guest/)
  qemu-system-x86 linux-image-amd64 busybox-static qemu-guest-agent
  libc6-dev cpio socat xz-utils zstd
)

die() {
  echo "install-deps: $*" >&2
  exit 1
}

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found: this script supports Debian and its derivatives only"

is_installed() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
  [[ $status == ii* ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  if ((EUID != 0)); then
    die "missing packages: ${missing[*]}
Run this as root to install them:  sudo $0   (or: sudo make deps)"
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_opts=(-y -q -o Dpkg::Use-Pty=0
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt-get "${apt_opts[@]}" update </dev/null >/dev/null ||
    die "apt-get update failed"
  apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" \
    </dev/null || die "apt-get install failed for: ${missing[*]}"
  still=()
  for pkg in "${missing[@]}"; do
    is_installed "$pkg" || still+=("$pkg")
  done
  ((${#still[@]} == 0)) || die "still missing after apt-get install: ${still[*]}"
fi

# FUSE needs the /dev/fuse character device.
if [[ ! -c /dev/fuse ]]; then
  if ((EUID == 0)); then
    modprobe fuse >/dev/null 2>&1 || true
    # In a container the module may be there while the node is not.
    if [[ ! -c /dev/fuse ]] && grep -qw fuse /proc/filesystems 2>/dev/null; then
      mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
    fi
  fi
  [[ -c /dev/fuse ]] ||
    die "/dev/fuse does not exist: load the fuse kernel module (modprobe fuse, as root), or give the container access to /dev/fuse"
fi
exit 0
