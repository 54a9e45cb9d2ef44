#!/bin/bash
# contrib/nightly-export.sh as cron would run it: the first run makes a
# full export, the next a differential against it; by default each
# reference point drops its point-in-time data once exported
# (KeepAssociatedData=false), -d keeps it; -k prunes the oldest.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
requires inotifywait

mk_store vm1 sda:32M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
RPS=$MNT/vm1/referencepoints
BK=$(new_dir backup)
NIGHTLY=$REPO/contrib/nightly-export.sh

step "run 1: full export; its data is dropped"
"$NIGHTLY" -p n- "$MNT" vm1 "$BK" </dev/null
rp1=$(ls "$RPS")
assert_eq "$(grep -c . <<<"$rp1")" 1 "reference points after run 1"
assert_file_eq "$RPS/$rp1/HasAssociatedData" false
assert_match "$(cat "$BK/$rp1/vm1/referencepoint")" "ExportType = full" "run 1's export"

step "run 2 (-d): a differential against run 1; its data is kept"
fill_file "$MNT/vm1/disks/sda" 0x3c 2M 128K
cp --sparse=always "$MNT/vm1/disks/sda" "$WORK/now.raw"
sleep 1 # reference point names carry the time to the second
"$NIGHTLY" -p n- -d "$MNT" vm1 "$BK" </dev/null
rp2=$(ls "$RPS" | grep -vx "$rp1")
assert_file_eq "$RPS/$rp2/HasAssociatedData" true
assert_match "$(cat "$BK/$rp2/vm1/referencepoint")" "BaseReferencePoint = $rp1" "run 2's export"
qemu-img convert -O raw "$BK/$rp2/vm1/disks/sda.qcow2" "$WORK/restored.raw"
cmp "$WORK/restored.raw" "$WORK/now.raw" || fail "run 2's export does not restore the disk"

step "run 3 (-k 1): only the newest reference point stays"
sleep 1
"$NIGHTLY" -p n- -k 1 "$MNT" vm1 "$BK" </dev/null
assert_eq "$(ls "$RPS" | wc -l)" 1 "reference points after run 3 with -k 1"

umount_rpfs "$MNT"
pass
