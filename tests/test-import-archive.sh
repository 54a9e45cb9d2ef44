#!/bin/bash
# ImportReferencePointMetadata with one line, the path of an archive export
# (reference.md 3): rpfs reads config and referencepoint out of it as the
# caller and registers the reference point again, which then serves as an
# exact base.  Non-archives, archives without those members, a symlink and
# a file the caller may not read are refused.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires tar zstd

mk_store vm1 sda:32M
echo 'owner = 65534' >>"$STORE/systems/vm1.conf"   # uid 65534 is an operator
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
IMP=$MNT/vm1/ImportReferencePointMetadata

step "rp1 and an archive export of it (tar.zst); then the store is lost"
mkdir "$RPS/rp1"
E1=$(new_dir e1)
export_rp "$RPS/rp1" "$E1" Format=tar.zst
ID1=$(cat "$RPS/rp1/InstanceID")
umount_rpfs "$MNT"
rm -rf "$STORE/state"
mount_rpfs "$STORE" "$MNT"
fill_file "$MNT/vm1/disks/sda" 0x5e 4M 128K

# One line may be the first of two (config, then referencepoint), so the
# write accepts it and the call at close(2) fails: the result line says so.
refused_at_close() { # [--as-user] RV PATH
  local run=()
  if [[ $1 == --as-user ]]; then run=(as_user); shift; fi
  "${run[@]}" bash -c 'printf "%s\n" "$1" >"$2"' _ "$2" "$IMP" 2>/dev/null || true
  local line
  line=$("${run[@]}" cat "$IMP")
  read -r RV JOB DESC <<<"$line"
  assert_eq "$RV" "$1" "ReturnValue of importing $2 ($DESC)"
  echo "   $DESC"
}

step "not an archive, an archive without the members, a symlink: EINVAL"
echo hello >"$TMPROOT/plain"
refused_at_close 32773 "$TMPROOT/plain"
tar -cf "$TMPROOT/other.tar" -C "$TMPROOT" plain
refused_at_close 32773 "$TMPROOT/other.tar"
ln -s "$E1/vm1.tar.zst" "$TMPROOT/link.tar.zst"
refused_at_close 32773 "$TMPROOT/link.tar.zst"
refused_at_close 32773 /dev/zero

step "a file the caller may not read: EACCES (read as the caller)"
cp "$E1/vm1.tar.zst" "$TMPROOT/secret.tar.zst"
chmod 0600 "$TMPROOT/secret.tar.zst"
refused_at_close --as-user 32769 "$TMPROOT/secret.tar.zst"

step "the archive: rp1 comes back, RCT based, same InstanceID"
call_method "$IMP" "$E1/vm1.tar.zst"$'\n'
assert_eq "$RV" 0 "ReturnValue of the import ($DESC)"
assert_eq "$(listing "$RPS")" rp1 "reference points"
assert_file_eq "$RPS/rp1/InstanceID" "$ID1"
assert_file_eq "$RPS/rp1/ReferencePointType" 2

step "it is an exact base: a differential from it restores over the archive"
mkdir "$RPS/rp2"
cp --sparse=always "$MNT/vm1/disks/sda" "$WORK/sda-at-rp2.raw"
E2=$(new_dir e2)
export_rp "$RPS/rp2" "$E2" Format=tar BaseReferencePoint=rp1
tar -xSf "$E1/vm1.tar.zst" -C "$E1"
tar -xSf "$E2/vm1.tar" -C "$E2"
# An imported point has no record of where its export went: name the base.
assert_eq "$(backing_of "$E2/vm1/disks/sda.qcow2")" "" "backing file"
qemu-img rebase -u -b ../../../e1/vm1/disks/sda.raw -F raw "$E2/vm1/disks/sda.qcow2"
qemu-img convert -O raw "$E2/vm1/disks/sda.qcow2" "$WORK/conv.raw"
cmp "$WORK/conv.raw" "$WORK/sda-at-rp2.raw" || fail "rp2 from the imported base"

step "a streamed export of this mount: refused, and no stream starts"
streams() { grep -lx 203 "$MNT"/jobs/*/JobType 2>/dev/null | wc -l; }
before=$(streams)
refused_at_close 32773 "$RPS/rp2/export.tar"
assert_match "$DESC" "inside the rpfs mount" "why a file of the mount is refused"
assert_eq "$(streams)" "$before" "stream jobs after the refused import"

umount_rpfs "$MNT"
pass
