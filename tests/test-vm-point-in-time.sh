#!/bin/bash
# A real guest keeps writing a verifiable pattern to both of its disks (the
# same blocks over and over, tests/guest/README.md) while rpfs makes three
# reference points and exports them, full and as a differential chain.
# check-pattern, independent of rpfs, proves that every export holds one
# instant of the guest's write sequence on both disks at once; the cuts are
# in creation order, and the guest overwrote every slot of both disks
# between each reference point and its export.  The chain and a full
# export of the newest reference point hold the same disk.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=vm.sh
source "$(dirname "$0")/vm.sh"
requires_root
vm_kit
export VM_SLOTS=${VM_SLOTS:-512}
WRAP=$((2 * VM_SLOTS))          # writes until every slot of both disks is new

new_store
IMAGES_DIR=$IMAGES
for d in sda sdb; do
  qemu-img create -q -f qcow2 "$IMAGES_DIR/vm1-$d.qcow2" 64M
done
cat >"$STORE/systems/vm1.conf" <<EOF
qmp = $WORK/vm1.qmp
disk sda = $IMAGES_DIR/vm1-sda.qcow2
node sda = vm1-sda
disk sdb = $IMAGES_DIR/vm1-sdb.qcow2
node sdb = vm1-sdb
EOF
MNT=$TMPROOT/mnt
RPS=$MNT/vm1/referencepoints

vm_start vm1 "$IMAGES_DIR/vm1-sda.qcow2" "$IMAGES_DIR/vm1-sdb.qcow2"
vm_wait_seq vm1 100 120
mount_rpfs "$STORE" "$MNT"

# make_rp NAME: mkdir while the guest writes.  LO[NAME]: the writer's seq
# printed before the mkdir; HI[NAME]: the first seq it printed after the
# mkdir returned (the writer prints every 0.5 s).  The cut lies in between.
declare -A LO HI CUT
make_rp() {
  local h
  LO[$1]=$(vm_seq vm1)
  mkdir "$RPS/$1"
  h=$(vm_seq vm1)
  vm_wait_seq vm1 $((h + 1)) 60
  HI[$1]=$(vm_seq vm1)
  assert_file_eq "$RPS/$1/HasAssociatedData" true
}

# cut_of NAME DIR: convert the export in DIR (with its backing chain) to raw
# and check the pattern; sets CUT[NAME].
cut_of() {
  local name=$1 dir=$2 out
  raw_of "$dir/vm1/disks/sda.qcow2" "$WORK/$name.sda.raw"
  raw_of "$dir/vm1/disks/sdb.qcow2" "$WORK/$name.sdb.raw"
  out=$("$VM_CHECK" "$VM_SLOTS" "$WORK/$name.sda.raw" "$WORK/$name.sdb.raw") ||
    fail "export of $name is not one instant of the guest's writes: $out"
  echo "   $name: $out"
  CUT[$name]=$(sed -n 's/^cut seq=\([0-9]*\) .*/\1/p' <<<"$out")
  ((CUT[$name] >= LO[$name] && CUT[$name] <= HI[$name])) ||
    fail "$name's cut (seq ${CUT[$name]}) is outside the writes around its mkdir (${LO[$name]}..${HI[$name]})"
}

# overwritten NAME: wait until the guest has rewritten every slot since NAME.
overwritten() { vm_wait_seq vm1 $((HI[$1] + WRAP + 2)) 300; }

step "three reference points while the guest writes, each followed by a full rewrite"
make_rp rp1
overwritten rp1
make_rp rp2
overwritten rp2
make_rp rp3
overwritten rp3

step "export rp1 (full), rp2 (base rp1), rp3 (base rp2) while the guest goes on"
S0=$(vm_seq vm1)
E1=$(new_dir e1)
E2=$(new_dir e2)
E3=$(new_dir e3)
E4=$(new_dir e4)
export_rp "$RPS/rp1" "$E1"
export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
export_rp "$RPS/rp3" "$E3" "BaseReferencePoint=rp2"
export_rp "$RPS/rp3" "$E4"
(cd "$E3/vm1" && sha256sum -c --quiet SHA256SUMS) || fail "rp3's SHA256SUMS"
assert_eq "$(realpath "$(backing_of "$E3/vm1/disks/sdb.qcow2")")" "$E2/vm1/disks/sdb.qcow2" "rp3's backing"
assert_eq "$(realpath "$(backing_of "$E2/vm1/disks/sdb.qcow2")")" "$E1/vm1/disks/sdb.qcow2" "rp2's backing"

step "each export is one instant of both disks, in creation order"
cut_of rp1 "$E1"
cut_of rp2 "$E2"
cut_of rp3 "$E3"
((CUT[rp1] < CUT[rp2] && CUT[rp2] < CUT[rp3])) ||
  fail "cuts out of order: ${CUT[rp1]} ${CUT[rp2]} ${CUT[rp3]}"

step "the differential chain of rp3 and its full export hold the same disks"
raw_of "$E4/vm1/disks/sda.qcow2" "$WORK/rp3full.sda.raw"
raw_of "$E4/vm1/disks/sdb.qcow2" "$WORK/rp3full.sdb.raw"
cmp "$WORK/rp3.sda.raw" "$WORK/rp3full.sda.raw" || fail "sda: chain and full export differ"
cmp "$WORK/rp3.sdb.raw" "$WORK/rp3full.sdb.raw" || fail "sdb: chain and full export differ"

step "the guest kept writing while the exports ran"
S1=$(vm_seq vm1)
((S1 > S0)) || fail "the writer did not advance during the exports (seq $S0 -> $S1)"

step "each export was paced by the guest's disk latency (export-rate-limit = auto, the default for a VM)"
paced=$(grep -c "export job [0-9]* was paced by the guest's disk latency" "${_MNT_LOG[$MNT]}" || true)
grep "was paced by\|too few disk requests" "${_MNT_LOG[$MNT]}" | sed 's/^/   /'
assert_eq "$paced" 4 "exports that say in rpfs's log how the guest's latency paced them"

step "an archive export of rp3 (read in the VM's request size) holds the same disks"
E5=$(new_dir archive-rp3)
export_rp "$RPS/rp3" "$E5" "Format=tar"
mkdir -p "$WORK/unpack"
tar -xSf "$E5/vm1.tar" -C "$WORK/unpack" || fail "tar -x of vm1.tar"
for d in sda sdb; do
  cmp "$WORK/unpack/vm1/disks/$d.raw" "$WORK/rp3full.$d.raw" || fail "$d in vm1.tar differs from the full export of rp3"
done

umount_rpfs "$MNT"
pass
