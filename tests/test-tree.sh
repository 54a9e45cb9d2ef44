#!/bin/bash
# The tree (interface.md 3 and 4): systems, their properties, disks; a
# generated VirtualSystemIdentifier stays the same across mounts; st_size of
# every property file is the length of its value.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

UUID2=0c7a1e52-3c1d-4c4e-9a36-0e4f3c2b9d10
new_store
add_system vm1 sda:32M sdb:16M
add_system --uuid "$UUID2" vm2 sda:16M
raw_of "$(img_of vm1 sda)" "$WORK/vm1-sda.raw"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"

# has_entries DIR NAME...: DIR lists at least these names.
has_entries() {
  local dir=$1 name list
  shift
  list=$(ls -A "$dir") || fail "cannot list $dir"
  for name in "$@"; do
    grep -qxF -- "$name" <<<"$list" || fail "$dir has no '$name' (it has: $(echo "$list" | tr '\n' ' '))"
  done
}

# size_matches FILE...: stat's st_size equals the bytes cat reads.
size_matches() {
  local f st n
  for f in "$@"; do
    st=$(stat -c %s "$f")
    n=$(wc -c <"$f")
    assert_eq "$st" "$n" "st_size of $f (vs bytes read)"
  done
}

step "the root lists the systems and jobs/"
assert_eq "$(listing "$MNT")" "jobs vm1 vm2" "ls of the mount"

step "a system directory holds its properties, methods, disks/ and referencepoints/"
has_entries "$MNT/vm1" ElementName VirtualSystemIdentifier CreateReferencePoint \
  ImportReferencePointMetadata disks referencepoints
assert_eq "$(listing "$MNT/vm1/disks")" "sda sdb" "ls of vm1/disks"
assert_eq "$(ls -A "$MNT/vm1/referencepoints")" "" "referencepoints/ of a new store"

step "ElementName is the system's name"
assert_file_eq "$MNT/vm1/ElementName" vm1
assert_file_eq "$MNT/vm2/ElementName" vm2

step "VirtualSystemIdentifier: from the definition, or a generated UUID"
assert_file_eq "$MNT/vm2/VirtualSystemIdentifier" "$UUID2"
uuid1=$(cat "$MNT/vm1/VirtualSystemIdentifier")
assert_match "$uuid1" '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' \
  "generated VirtualSystemIdentifier"

step "a disk file has the virtual size and the image's content"
assert_eq "$(stat -c %s "$MNT/vm1/disks/sda")" $((32 * 1024 * 1024)) "st_size of disks/sda"
assert_eq "$(stat -c %s "$MNT/vm1/disks/sdb")" $((16 * 1024 * 1024)) "st_size of disks/sdb"
cmp "$MNT/vm1/disks/sda" "$WORK/vm1-sda.raw" || fail "disks/sda differs from the image"

step "st_size of every property file equals its content length"
size_matches "$MNT/vm1/ElementName" "$MNT/vm1/VirtualSystemIdentifier" \
  "$MNT/vm2/ElementName" "$MNT/vm2/VirtualSystemIdentifier"
mkdir "$MNT/vm1/referencepoints/rp1"
rp=$MNT/vm1/referencepoints/rp1
size_matches "$rp/InstanceID" "$rp/ElementName" "$rp/ReferencePointType" \
  "$rp/ConsistencyLevel" "$rp/VirtualSystemIdentifier" "$rp/HasAssociatedData" \
  "$rp/VirtualDiskIdentifiers" "$rp/ResilientChangeTrackingIdentifiers" \
  "$rp/CreationTime" "$rp/ExportSettingData/BaseReferencePoint" \
  "$rp/ExportSettingData/DisksToExport"
for job in "$MNT"/jobs/*; do
  for f in "$job"/*; do
    [[ $(basename "$f") == RequestStateChange ]] || size_matches "$f"
  done
done

step "the generated VirtualSystemIdentifier is the same after a remount"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$MNT/vm1/VirtualSystemIdentifier" "$uuid1"
assert_file_eq "$MNT/vm2/VirtualSystemIdentifier" "$UUID2"
assert_file_eq "$MNT/vm1/referencepoints/rp1/VirtualSystemIdentifier" "$uuid1"
umount_rpfs "$MNT"

pass
