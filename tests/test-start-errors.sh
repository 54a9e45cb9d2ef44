#!/bin/bash
# A bad store or system definition stops rpfs at start-up: exit status 1 and
# a message naming the file and line (interface.md 1 and 2).
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# good_conf NAME: a valid definition with one disk.
good_conf() {
  add_system "$1" sda:16M
}

step "unknown key: the message names vm1.conf:3 (a good vm0 does not help)"
new_store
good_conf vm0
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
# line 1
VirtualSystemIdentifier = 5f0c7e52-3c1d-4c4e-9a36-0e4f3c2b9d10
colour = blue
disk sda = $(img_of vm1 sda)
EOF
start_fails "$STORE" "vm1.conf:3"

step "relative disk path: vm1.conf:2"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
# line 1
disk sda = images/vm1-sda.qcow2
EOF
start_fails "$STORE" "vm1.conf:2"

step "missing image: vm1.conf:3"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
# line 1
disk sda = $(img_of vm1 sda)
disk sdb = $IMAGES/does-not-exist.qcow2
EOF
start_fails "$STORE" "vm1.conf:3"

step "export-rate-limit that is not a rate: vm1.conf:3 and the expected form"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
disk sda = $(img_of vm1 sda)
# line 2
export-rate-limit = 100 MB/s
EOF
start_fails "$STORE" "vm1.conf:3" "export-rate-limit '100 MB/s'" "e.g. '200M'"

step "export-rate-limit = auto on a system that is not a running VM: vm1.conf:2"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
disk sda = $(img_of vm1 sda)
export-rate-limit = auto
EOF
start_fails "$STORE" "vm1.conf:2" "needs a 'qmp = SOCKET' line"

step "raw image (no persistent tracking): vm1.conf:2 and the way out"
new_store
good_conf vm1
qemu-img create -q -f raw "$IMAGES/vm1-raw.img" 16M
cat >"$STORE/systems/vm1.conf" <<EOF
# line 1
disk sda = $IMAGES/vm1-raw.img
EOF
start_fails "$STORE" "vm1.conf:2" "raw" "data_file"

step "qcow2 version 2 (compat 0.10): vm1.conf:2"
new_store
good_conf vm1
qemu-img create -q -f qcow2 -o compat=0.10 "$IMAGES/vm1-v2.qcow2" 16M
cat >"$STORE/systems/vm1.conf" <<EOF
# line 1
disk sda = $IMAGES/vm1-v2.qcow2
EOF
start_fails "$STORE" "vm1.conf:2" "compat"

step "malformed VirtualSystemIdentifier: vm1.conf:1"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
VirtualSystemIdentifier = not-a-uuid
disk sda = $(img_of vm1 sda)
EOF
start_fails "$STORE" "vm1.conf:1"

step "duplicate disk id: vm1.conf:4"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF

# blank line and comment above are ignored
disk sda = $(img_of vm1 sda)
disk sda = $(img_of vm1 sda)
EOF
start_fails "$STORE" "vm1.conf:4"

step "line without '=': vm1.conf:2"
new_store
good_conf vm1
cat >"$STORE/systems/vm1.conf" <<EOF
disk sda = $(img_of vm1 sda)
disk sdb $(img_of vm1 sda)
EOF
start_fails "$STORE" "vm1.conf:2"

step "store that does not exist: the message names it"
start_fails "$WORK/no-such-store" "$WORK/no-such-store"

pass
