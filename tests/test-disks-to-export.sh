#!/bin/bash
# DisksToExport (interface.md 3, 5.3): the setting or a DisksToExport= line
# picks the disks an export holds; empty means all.  The job's ExportedDisks
# and SHA256SUMS list just those.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires sha256sum

new_store
add_system vm1 sda:32M sdb:16M sdc:16M
for d in sda sdb sdc; do raw_of "$(img_of vm1 $d)" "$WORK/$d.raw"; done
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RP=$MNT/vm1/referencepoints/rp1
SETTING=$RP/ExportSettingData/DisksToExport
mkdir "$RP"

# check_disks DIR DISK...: DIR/vm1 holds exactly these disk images, verified
# by SHA256SUMS, each equal to the disk; the job ExportedDisks lists them.
check_disks() {
  local x=$1/vm1 d listed
  shift
  local want
  want=$(for d in "$@"; do echo "$d.digests"; echo "$d.qcow2"; done | sort | tr '\n' ' ')
  assert_eq "$(listing "$x/disks")" "${want% }" "disks in $x"
  (cd "$x" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed in $x"
  listed=$(awk '{ print $2 }' "$x/SHA256SUMS" | sed 's/^\*//' | sort | tr '\n' ' ')
  # shellcheck disable=SC2086 # one file name a word
  assert_eq "$listed" "config $(printf 'disks/%s ' $want)referencepoint " "SHA256SUMS of $x"
  for d in "$@"; do
    raw_of "$x/disks/$d.qcow2" "$WORK/check.raw"
    cmp "$WORK/check.raw" "$WORK/$d.raw" || fail "$x/disks/$d.qcow2 differs from $d"
  done
  assert_file_eq "$MNT/jobs/$JOB/ExportedDisks" "$(printf '%s\n' "$@")"
}

step "default (empty setting): all disks"
assert_file_eq "$SETTING" ""
E=$(new_dir all)
export_rp "$RP" "$E"
check_disks "$E" sda sdb sdc

step "a DisksToExport=sdb line: only sdb"
E=$(new_dir line-sdb)
export_rp "$RP" "$E" "DisksToExport=sdb"
check_disks "$E" sdb
assert_file_eq "$SETTING" ""

step "the setting 'sda': only sda; it reads back one disk a line"
echo sda >"$SETTING"
assert_file_eq "$SETTING" sda
E=$(new_dir setting-sda)
export_rp "$RP" "$E"
check_disks "$E" sda

step "a line overrides the setting for that call only"
E=$(new_dir override-sdc)
export_rp "$RP" "$E" "DisksToExport=sdc"
check_disks "$E" sdc
assert_file_eq "$SETTING" sda

step "the setting 'sda,sdc' (comma form) reads back as lines"
echo sda,sdc >"$SETTING"
assert_file_eq "$SETTING" $'sda\nsdc'
E=$(new_dir setting-sda-sdc)
export_rp "$RP" "$E"
check_disks "$E" sda sdc

step "the setting as lines, 'sdb\\nsdc'"
printf 'sdb\nsdc\n' >"$SETTING"
assert_file_eq "$SETTING" $'sdb\nsdc'

step "echo > DisksToExport empties it: all disks again"
echo >"$SETTING"
assert_file_eq "$SETTING" ""
E=$(new_dir all-again)
export_rp "$RP" "$E"
check_disks "$E" sda sdb sdc

umount_rpfs "$MNT"
pass
