#!/bin/bash
# shellcheck disable=SC2016 # single-quoted commands expand where they run (bash -c, eval)
# Bad calls of ExportReferencePoint and bad writes to settings and read-only
# files (interface.md 4, 5, 5.3, 6): each fails at once with the errno of
# section 6, a method call leaves a job record with its ReturnValue, and
# nothing is written anywhere.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires_root
requires setpriv

new_store
add_system vm1 sda:32M sdb:16M
# uid 65534 (as_user) calls methods of vm1 below: make it an operator
# (docs/reference.md, "Who may do what").
echo "owner = 65534" >>"$STORE/systems/vm1.conf"
add_system vm2 sda:16M
add_system vmbig sda:1G
fill_busy "$(img_of vmbig sda)"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
RP1=$RPS/rp1
RP2=$RPS/rp2

mkdir "$RP1"
fill_file "$MNT/vm1/disks/sda" 0x99 2M 1M
mkdir "$RP2"
call_method "$MNT/vm1/CreateReferencePoint" $'rct\nReferencePointType=2\n'
mkdir "$RPS/rpx"
mkdir "$MNT/vm2/referencepoints/other"
OTHER_ID=$(cat "$MNT/vm2/referencepoints/other/InstanceID")
mkdir "$MNT/vmbig/referencepoints/big1"
E_DONE=$(new_dir finished)
export_rp "$RP1" "$E_DONE"
E=$(new_dir target)

# refused [--as-user] ERRNO RV RPDIR PAYLOAD: an ExportReferencePoint call
# that must fail with ERRNO and ReturnValue RV, leave an export job record
# (which RPDIR/job then points to) and change nothing under $WATCH.
WATCH=$TMPROOT
refused() {
  local as=()
  if [[ $1 == --as-user ]]; then
    as=(--as-user)
    shift
  fi
  local errno=$1 rv=$2 rp=$3 payload=$4 before after
  echo "   $(basename "$rp") <- $(printf '%q' "$payload") : $errno"
  before=$(snapshot "$WATCH")
  method_refused "${as[@]}" "$errno" "$rv" "$rp/ExportReferencePoint" "$payload"
  assert_file_eq "$MNT/jobs/$JOB/JobType" 203
  assert_eq "$(basename "$(readlink "$rp/job")")" "$JOB" "$(basename "$rp")/job symlink"
  after=$(snapshot "$WATCH")
  [[ $before == "$after" ]] ||
    fail "the refused call changed $WATCH: $(diff <(echo "$before") <(echo "$after") | tr '\n' ' ')"
}

step "ExportDirectory: relative, parent missing, inside the mount, export already there (EINVAL)"
refused EINVAL 32773 "$RP2" $'tmp/export\n'
refused EINVAL 32773 "$RP2" "$TMPROOT/no-such-parent/export"
[[ ! -e $TMPROOT/no-such-parent ]] || fail "the parent was created"
refused EINVAL 32773 "$RP2" "$MNT/export"
refused EINVAL 32773 "$RP2" "$MNT/vm1"
refused EINVAL 32773 "$RP2" "$E_DONE"
assert_eq "$(ls -A "$E_DONE")" vm1 "the earlier export's directory"

step "the caller (uid 65534) may not create files in ExportDirectory (EACCES)"
R_ONLY=$(new_dir root-only)
refused --as-user EACCES 32769 "$RP2" "$R_ONLY"
step "... while a directory the caller may write to works"
OPEN=$(new_dir open)
chmod 0777 "$OPEN"
export _F=$RP2/ExportReferencePoint _P=$OPEN
as_user bash -c 'echo "$_P" > "$_F"' || fail "export as uid 65534 into a directory it owns failed"
read -r RV JOB DESC <<<"$(as_user cat "$_F")"
assert_eq "$RV" 4096 "ReturnValue of the export as uid 65534 ($DESC)"
wait_job_done "$MNT/jobs/$JOB"
assert_job_completed "$JOB"
step "... and every file of that export belongs to uid 65534"
others=$(find "$OPEN/vm1" ! -uid 65534)
[[ -z $others ]] || fail "files of the export not owned by the caller: $others"

step "BaseReferencePoint: unknown, newer, itself, of another system (EINVAL)"
refused EINVAL 32773 "$RP2" "$E"$'\nBaseReferencePoint=nosuch\n'
refused EINVAL 32773 "$RP1" "$E"$'\nBaseReferencePoint=rp2\n'
refused EINVAL 32773 "$RP2" "$E"$'\nBaseReferencePoint=rp2\n'
refused EINVAL 32773 "$RP2" "$E"$'\nBaseReferencePoint=other\n'
refused EINVAL 32773 "$RP2" "$E"$'\nBaseReferencePoint='"$OTHER_ID"$'\n'

step "DisksToExport with an unknown disk, an unknown key (EINVAL)"
refused EINVAL 32773 "$RP2" "$E"$'\nDisksToExport=sdz\n'
refused EINVAL 32773 "$RP2" "$E"$'\nDisksToExport=sda,sdz\n'
refused EINVAL 32773 "$RP2" "$E"$'\nColour=blue\n'

step "a reference point without associated data cannot be exported (EPERM)"
refused EPERM 32775 "$RPS/rct" "$E"

step "garbage payloads (EINVAL)"
refused EINVAL 32773 "$RP2" $'\n'
refused EINVAL 32773 "$RP2" $'\xff\xfe\x01garbage\n'
refused EINVAL 32773 "$RP2" "$E"$'\r\n'
refused EINVAL 32773 "$RP2" "$E"$'\n\nDisksToExport=sda\n'
refused EINVAL 32773 "$RP2" "$E"$'\nDisksToExport=sda\n'"$E"$'\n'
export _F=$RP2/ExportReferencePoint _E=$E
assert_fails_with EINVAL 'printf "%s\000junk\n" "$_E" > "$_F"'
read_result "$_F"
assert_eq "$RV" 32773 "ReturnValue for a payload with a NUL byte"

step "an oversized write (70000 bytes in one write) to a method (EINVAL)"
BIG=$WORK/big-payload
{ printf '%s\n' "$E"; head -c 69000 /dev/zero | tr '\0' 'x'; } >"$BIG"
export _BIG=$BIG
before=$(snapshot "$TMPROOT")
assert_fails_with EINVAL 'dd if="$_BIG" of="$_F" bs=70000 count=1 conv=notrunc status=none'
assert_eq "$(snapshot "$TMPROOT")" "$before" "files after an oversized write"

step "a write that does not continue the request is a partial write (EINVAL)"
export _F=$RPS/rpx/ExportReferencePoint
assert_fails_with EINVAL 'printf /tmp | dd of="$_F" bs=4 seek=1 conv=notrunc status=none'
[[ $(cat "$RPS/rpx/HasAssociatedData") == true ]] || fail "rpx changed"
step "a request in several writes is checked at each write: the bad part fails"
export _F=$RPS/rpx/ExportReferencePoint
assert_fails_with EINVAL 'printf "%s\nColour=blue\n" "$(new_dir split)" | dd of="$_F" bs=1 conv=notrunc status=none'
export _F=$RPS/rpx/RemoveAssociatedData
printf xy | dd of="$_F" bs=1 conv=notrunc status=none
wait_until 60 "rpx's associated data to go" \
  eval '[[ $(cat "$RPS/rpx/HasAssociatedData") == false ]]'

step "a second export of a reference point while one runs (EBUSY)"
BIG1=$MNT/vmbig/referencepoints/big1
EB1=$(new_dir busy1)
EB2=$(new_dir busy2)
start_export "$BIG1" "$EB1"
FIRST=$JOB
case $(job_state "$FIRST") in
  7 | 8 | 10) fail "the first export ended at once; raise RPFS_TEST_BUSY_MB (now $BUSY_MB)" ;;
esac
WATCH=$EB2
refused EBUSY 32774 "$BIG1" "$EB2"
step "... and rmdir of it (EBUSY)"
export _R=$BIG1
assert_fails_with EBUSY 'rmdir "$_R"'
[[ -d $BIG1 ]] || fail "big1 went away"
[[ $(job_state "$FIRST") != 7 ]] ||
  echo "   (note: the first export had ended meanwhile; raise RPFS_TEST_BUSY_MB if this flips)"
wait_job_done "$MNT/jobs/$FIRST"
assert_job_completed "$FIRST"
WATCH=$TMPROOT

# setting_refused ERRNO FILE PAYLOAD: writing a setting fails at once and the
# value stays as it was.
setting_refused() {
  local errno=$1 old
  export _F=$2 _P=$3
  old=$(cat "$_F")
  echo "   $(basename "$_F") <- $(printf '%q' "$_P") : $errno"
  assert_fails_with "$errno" 'printf "%s" "$_P" > "$_F"'
  assert_eq "$(cat "$_F")" "$old" "$_F after a refused write"
}

step "settings: bad BaseReferencePoint values (EINVAL), value unchanged"
BASE2=$RP2/ExportSettingData/BaseReferencePoint
setting_refused EINVAL "$BASE2" $'nosuch\n'
setting_refused EINVAL "$BASE2" $'rp2\n'
setting_refused EINVAL "$BASE2" $'other\n'
setting_refused EINVAL "$BASE2" "$OTHER_ID"
setting_refused EINVAL "$BASE2" $'rp1\nrp1\n'
setting_refused EINVAL "$RP1/ExportSettingData/BaseReferencePoint" $'rp2\n'

step "settings: bad DisksToExport values (EINVAL), value unchanged"
DISKS2=$RP2/ExportSettingData/DisksToExport
setting_refused EINVAL "$DISKS2" $'sdz\n'
setting_refused EINVAL "$DISKS2" $'sda,sdz\n'
setting_refused EINVAL "$DISKS2" $'sda\nsda\n'

step "settings: oversized write (EINVAL)"
head -c 70000 /dev/zero | tr '\0' 'r' >"$BIG"
export _F=$BASE2
assert_fails_with EINVAL 'dd if="$_BIG" of="$_F" bs=70000 count=1 conv=notrunc status=none'
assert_file_eq "$BASE2" ""

step "settings: 'rp10' in writes of 3 and 1 bytes: the second write fails, the value before the open stays"
assert_fails_with EINVAL 'printf rp10 | dd of="$_F" bs=3 conv=notrunc status=none'
assert_file_eq "$BASE2" ""
step "settings: a list written line by line (bash's printf) is taken whole"
printf 'sda\nsdb\n' >"$DISKS2"
assert_file_eq "$DISKS2" $'sda\nsdb'
echo >"$DISKS2"
assert_file_eq "$DISKS2" ""
assert_file_eq "$BASE2" ""

step "writes to read-only files fail (EACCES or EPERM) and change nothing"
J=$MNT/jobs/$FIRST
for f in "$MNT/vm1/ElementName" "$MNT/vm1/VirtualSystemIdentifier" \
  "$RP1/InstanceID" "$RP1/HasAssociatedData" "$RP1/CreationTime" \
  "$RP1/VirtualDiskIdentifiers" "$J/JobState" "$J/status" "$J/ReturnValue"; do
  old=$(cat "$f")
  export _F=$f
  assert_fails_with 'EACCES|EPERM' 'echo 1 > "$_F"'
  assert_eq "$(cat "$f")" "$old" "$f after a refused write"
done
export _F=$RP1/disks/sda
head -c 65536 "$_F" >"$WORK/rp1-sda-head"
assert_fails_with 'EACCES|EPERM|EROFS' 'head -c 4096 /dev/zero | dd of="$_F" bs=4096 conv=notrunc status=none'
cmp <(head -c 65536 "$_F") "$WORK/rp1-sda-head" || fail "rp1/disks/sda changed"

step "RequestStateChange with a bad value (EINVAL)"
export _F=$J/RequestStateChange
assert_fails_with EINVAL 'echo bogus > "$_F"'
assert_file_eq "$J/JobState" 7

umount_rpfs "$MNT"
pass
