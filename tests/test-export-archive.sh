#!/bin/bash
# Archive exports (reference.md 9, "Archive exports"): Format=tar, tar.gz,
# tar.xz, tar.zst (override line or ExportSettingData/Format) writes one file
# DIR/<system>.<format> plus <system>.<format>.sha256; tar unpacks it to the
# directory layout, the raw disks sparse, each the disk at the reference
# point; sha256sum -c checks the sidecar and SHA256SUMS inside.  Bad Format
# values fail with EINVAL.  sda is mostly holes, so its hashes are fed by a
# second reader ahead of the archive; sdb is mostly data, so they are fed
# from the archive's own reads (arcraw.c): both paths are checked.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum tar zstd xz gzip

mk_store vm1 sda:64M sdb:16M
write_pattern "$(img_of vm1 sda)" 0x3c 40M 192K
write_pattern "$(img_of vm1 sdb)" 0x5a 6M 8M
for d in sda sdb; do raw_of "$(img_of vm1 $d)" "$WORK/$d-at-rp1.raw"; done
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
mkdir "$RP"
fill_file "$MNT/vm1/disks/sda" 0xf0 0 2M

check_archive() { # DIR FORMAT
  local dir=$1 fmt=$2 x
  assert_eq "$(listing "$dir")" "vm1.$fmt vm1.$fmt.sha256" "files in $dir"
  (cd "$dir" && sha256sum --quiet -c "vm1.$fmt.sha256") || fail "sidecar of vm1.$fmt"
  x=$WORK/unpack-$fmt
  mkdir -p "$x"
  tar -xSf "$dir/vm1.$fmt" -C "$x" || fail "tar -x of vm1.$fmt"
  assert_eq "$(cd "$x/vm1" && find . -type f | sort | tr '\n' ' ')" \
    "./SHA256SUMS ./config ./disks/sda.digests ./disks/sda.raw ./disks/sdb.digests ./disks/sdb.raw ./referencepoint " "members of vm1.$fmt"
  (cd "$x/vm1" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS in vm1.$fmt"
  for d in sda sdb; do
    cmp "$x/vm1/disks/$d.raw" "$WORK/$d-at-rp1.raw" || fail "$d in vm1.$fmt is not the disk at rp1"
  done
  # sparse: sda has 2.2 MiB of data in 64 MiB
  (($(du -k "$x/vm1/disks/sda.raw" | cut -f1) < 8192)) || fail "sda.raw unpacked from vm1.$fmt is not sparse"
  grep -q '^ExportType = full$' "$x/vm1/referencepoint" || fail "referencepoint of vm1.$fmt"
  rm -rf "$x"
}

for fmt in tar tar.gz tar.xz tar.zst; do
  step "Format=$fmt as an override line"
  E=$(new_dir "o-$fmt")
  export_rp "$RP" "$E" "Format=$fmt"
  check_archive "$E" "$fmt"
done

step "ExportSettingData/Format: default qcow2, set to tar.zst, kept"
assert_file_eq "$RP/ExportSettingData/Format" qcow2
echo tar.zst >"$RP/ExportSettingData/Format"
assert_file_eq "$RP/ExportSettingData/Format" tar.zst
E=$(new_dir s-zst)
export_rp "$RP" "$E"
check_archive "$E" tar.zst

step "a second export into the same directory: 32773, nothing changes"
before=$(snapshot "$E")
method_refused EINVAL 32773 "$RP/ExportReferencePoint" "$E"$'\n'
assert_eq "$(snapshot "$E")" "$before" "directory after a refused export"

step "bad Format values: EINVAL at the write, setting unchanged"
export RP
for bad in zip tar.bz2 TAR "" "tar.zst tar"; do
  export BAD=$bad
  # shellcheck disable=SC2016
  assert_fails_with EINVAL 'printf "%s\n" "$BAD" > "$RP/ExportSettingData/Format"'
done
assert_file_eq "$RP/ExportSettingData/Format" tar.zst
E=$(new_dir bad)
method_refused EINVAL 32773 "$RP/ExportReferencePoint" "$E"$'\nFormat=zip\n'
assert_match "$DESC" "Format must be" "description of a bad Format"
assert_empty_dir "$E"
echo qcow2 >"$RP/ExportSettingData/Format"

step "the setting survives a remount"
echo tar.gz >"$RP/ExportSettingData/Format"
umount_rpfs "$MNT"
mount_rpfs "$STORE" "$MNT"
assert_file_eq "$RP/ExportSettingData/Format" tar.gz
umount_rpfs "$MNT"
pass
