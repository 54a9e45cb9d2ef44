#!/bin/bash
# Digest tables (docs/design.md, "Digest tables"): a full and a differential
# export leave each disk's table in the store and disks/<id>.digests in the
# export (checked by SHA256SUMS).  After a crash the old reference points
# say `ChangeTracking: digests: ...` and still serve as bases: the export
# compares digests, is exact (qemu-img convert + cmp), skips blocks
# overwritten with the same data, zeroes blocks that became zero, and is no
# larger than 1.2 times the bitmap-based differential of the same change in
# a control run without the crash.  New reference points track by bitmap
# again.  A table with one byte changed is found at load: `lost`, and the
# export is refused (EPERM, 32775), never a wrong differential.  Tables go
# with rmdir.  Runs the scenario three times: no crash (control), kill -9 of
# the qemu-storage-daemon alone, kill -9 of it and rpfs together.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MNT=$TMPROOT/mnt

capture() {
  local d
  for d in sda sdb; do
    cp --sparse=always "$MNT/vm1/disks/$d" "$WORK/$d-at-rp$1.raw"
  done
  mkdir "$MNT/vm1/referencepoints/rp$1"
}

# check_image DIR N BASEDIR: DIR/vm1 restores to the disks at rpN.
check_image() {
  local x=$1/vm1 n=$2 base=${3:-} d img
  (cd "$x" && sha256sum --quiet -c SHA256SUMS) || fail "sha256sum -c failed in $x"
  for d in sda sdb; do
    img=$x/disks/$d.qcow2
    grep -q "  disks/$d.digests\$" "$x/SHA256SUMS" || fail "$x/SHA256SUMS lacks disks/$d.digests"
    [[ -z $base ]] || assert_eq "$(realpath "$(backing_of "$img")")" \
      "$(realpath "$base/vm1/disks/$d.qcow2")" "backing file of $img"
    raw_of "$img" "$WORK/check.raw"
    cmp "$WORK/check.raw" "$WORK/$d-at-rp$n.raw" || fail "$img is not $d at rp$n"
  done
}

size_of() { stat -c %s "$1/vm1/disks/sda.qcow2"; }

# scenario none|qemu|both: prints nothing; sets SIZE13 (bytes of the sda
# image of rp3 from rp1).
scenario() {
  local mode=$1 RPS E1 E2 E3 E4 E5 E6
  step "[$mode] rp1, full export; change; rp2, differential export"
  mk_store vm1 sda:32M sdb:16M
  mount_rpfs "$STORE" "$MNT"
  RPS=$MNT/vm1/referencepoints
  capture 1
  E1=$(new_dir "$mode-rp1")
  export_rp "$RPS/rp1" "$E1"
  check_image "$E1" 1
  [[ -f $STORE/state/vm1/rp/rp1/sda.digests ]] || fail "no table of rp1 in the store"
  cmp "$STORE/state/vm1/rp/rp1/sda.digests" "$E1/vm1/disks/sda.digests" ||
    fail "the export's table differs from the store's"
  fill_file "$MNT/vm1/disks/sda" 0xa1 2M 256K
  fill_file "$MNT/vm1/disks/sda" 0xa2 20M 64K
  capture 2
  E2=$(new_dir "$mode-rp2")
  export_rp "$RPS/rp2" "$E2" "BaseReferencePoint=rp1"
  check_image "$E2" 2 "$E1"

  step "[$mode] change after rp2: new data, the same data again, zeros"
  fill_file "$MNT/vm1/disks/sda" 0xb1 8M 1M
  fill_file "$MNT/vm1/disks/sda" 0x11 0 128K   # what is there already
  fill_file "$MNT/vm1/disks/sda" 0x00 4M 128K  # was 0x12
  fill_file "$MNT/vm1/disks/sdb" 0xb2 256K 64K
  case $mode in
    qemu)
      step "[$mode] kill -9 the qemu-storage-daemon"
      mapfile -t qsd < <(qsd_pids "$STORE")
      kill -KILL "${qsd[@]}"
      ;;
    both)
      step "[$mode] kill -9 the qemu-storage-daemon and rpfs; mount again"
      mapfile -t qsd < <(qsd_pids "$STORE")
      crash_rpfs "$MNT" "${qsd[@]}"
      mount_rpfs "$STORE" "$MNT"
      ;;
  esac
  capture 3
  local want=intact
  [[ $mode == none ]] || want="digests: bitmap lost at "
  for r in rp1 rp2; do
    assert_match "$(cat "$RPS/$r/ChangeTracking")" "^$want" "ChangeTracking of $r"
  done
  assert_file_eq "$RPS/rp3/ChangeTracking" intact

  step "[$mode] rp3 from rp1 and from rp2: exact, the right blocks"
  E3=$(new_dir "$mode-rp3-rp1")
  start_export "$RPS/rp3" "$E3" "BaseReferencePoint=rp1"
  local st
  st=$(cat "$MNT/jobs/$JOB/status")
  wait_job_done "$MNT/jobs/$JOB"
  assert_job_completed "$JOB"
  echo "   status while it ran: $st"
  check_image "$E3" 3 "$E1"
  local by=bitmaps
  [[ $mode == none ]] || by=digests
  grep -qx "DifferentialBy = $by" "$E3/vm1/referencepoint" ||
    fail "the export of rp3 was not made by $by: $(grep Differential "$E3/vm1/referencepoint")"
  alloc_ranges "$E3/vm1/disks/sda.qcow2" >"$WORK/got"
  local allowed=(2M:256K 20M:64K 8M:1M 4M:128K)
  [[ $mode == none ]] && allowed+=(0:128K)   # the bitmap saw the rewrite
  ranges "${allowed[@]}" >"$WORK/allowed"
  assert_ranges_within "rp3 from rp1" "$WORK/got" "$WORK/allowed"
  grep -q "^4194304 " "$WORK/got" || fail "the zeroed blocks at 4M are not in the image"
  SIZE13=$(size_of "$E3")
  E4=$(new_dir "$mode-rp3-rp2")
  export_rp "$RPS/rp3" "$E4" "BaseReferencePoint=rp2"
  check_image "$E4" 3 "$E2"

  step "[$mode] after the crash new reference points track by bitmap"
  fill_file "$MNT/vm1/disks/sda" 0xc1 12M 64K
  capture 4
  E5=$(new_dir "$mode-rp4")
  export_rp "$RPS/rp4" "$E5" "BaseReferencePoint=rp3"
  check_image "$E5" 4 "$E4"
  grep -qx "DifferentialBy = bitmaps" "$E5/vm1/referencepoint" || fail "rp4 from rp3 not by bitmap"
  umount_rpfs "$MNT"
  [[ $mode != none ]] || return 0

  step "[$mode] one byte changed in rp2's table: lost, refused"
  local t=$STORE/state/vm1/rp/rp2/sdb.digests
  printf '\x5a' | dd of="$t" bs=1 seek=1000 conv=notrunc status=none
  mount_rpfs "$STORE" "$MNT"
  assert_match "$(cat "$RPS/rp2/ChangeTracking")" "^lost: .*damaged" "ChangeTracking of damaged rp2"
  assert_match "$(cat "$RPS/rp1/ChangeTracking")" "^digests: " "ChangeTracking of rp1"
  E6=$(new_dir "$mode-rp4-rp2")
  method_refused EPERM 32775 "$RPS/rp4/ExportReferencePoint" "$E6"$'\nBaseReferencePoint=rp2\n'
  echo "   ErrorDescription: $(cat "$MNT/jobs/$JOB/ErrorDescription")"
  assert_empty_dir "$E6"

  step "[$mode] rmdir drops the tables"
  rmdir "$RPS/rp1"
  [[ ! -e $STORE/state/vm1/rp/rp1 ]] || fail "rp1's tables are still in the store"
  umount_rpfs "$MNT"
}

scenario none
control=$SIZE13
for m in qemu both; do
  scenario "$m"
  echo "   sda image of rp3 from rp1: $SIZE13 bytes after the crash, $control without"
  ((SIZE13 * 10 <= control * 12)) ||
    fail "[$m] the digest-based differential ($SIZE13) is larger than 1.2 x the bitmap-based one ($control)"
done
pass
