#!/bin/bash
# A store whose rpfs.conf says "libvirt = URI": every domain of that
# connection is a system directory named after it, with no definition file;
# a definition file named after a domain only adds settings (no disk lines
# needed).  A domain defined while rpfs is mounted appears, one undefined
# disappears (inotify sees both).  A shut-off domain is listed and served
# from its image (a reference point made there is a checkpoint in `virsh
# checkpoint-list`, and exports equal to the image); once started,
# reference points are made by backup jobs (an exact-size full export).  A
# bad rpfs.conf fails the mount with the file and the reason.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=libvirtd.sh
source "$(dirname "$0")/libvirtd.sh"
requires inotifywait
lv_kit
D1=rpfs-lvst-$$-a
D2=rpfs-lvst-$$-b
D3=rpfs-lvst-$$-c

# define NAME IMAGE: define a domain (not started).
define() {
  lv_xml "$1" "$2" >"$WORK/$1.xml"
  cleanup_add "_lv_cleanup_domain $(printf %q "$1")"
  lv_virsh define "$WORK/$1.xml" >/dev/null || fail "virsh define $1 failed"
}

lv_store
for i in a b c; do
  qemu-img create -q -f qcow2 "$IMAGES/$i.qcow2" 64M
done
define "$D1" "$IMAGES/a.qcow2"
define "$D3" "$IMAGES/c.qcow2"

step "a bad rpfs.conf fails the mount with the reason"
echo "libvirt-uri = qemu:///system" >"$STORE/rpfs.conf"
start_fails "$STORE" "rpfs.conf" "unknown key 'libvirt-uri'"

step "libvirt = $LV_URI: the domains are systems; $D3.conf only adds a setting"
echo "libvirt = $LV_URI" >"$STORE/rpfs.conf"
echo "export-rate-limit = 0" >"$STORE/systems/$D3.conf"
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
for d in "$D1" "$D3"; do
  [[ -d $MNT/$d ]] || fail "no system directory for domain $d: $(ls "$MNT")"
done
assert_eq "$(ls "$MNT" | grep -c "^$D3\$")" 1 "system directories of $D3"

step "a shut-off domain is served from its image"
RPS=$MNT/$D1/referencepoints
mkdir "$RPS/rp0"
assert_eq "$(lv_checkpoints "$D1")" "$(cat "$RPS/rp0/ResilientChangeTrackingIdentifiers")" "virsh checkpoint-list $D1"
E0=$(new_dir e0)
export_rp "$RPS/rp0" "$E0"
raw_of "$E0/$D1/disks/vda.qcow2" "$WORK/e0.raw"
raw_of "$IMAGES/a.qcow2" "$WORK/a.raw"
cmp "$WORK/e0.raw" "$WORK/a.raw" || fail "rp0's export is not the image"

step "a domain defined while mounted appears, undefined disappears (inotify sees both)"
inotifywait -m -q -e create,delete --format '%e %f' "$MNT" >"$WORK/events" 2>/dev/null &
INW=$!
cleanup_add "kill $INW 2>/dev/null || true"
sleep 0.5
define "$D2" "$IMAGES/b.qcow2"
wait_until 10 "$D2 in the mount" test -d "$MNT/$D2"
lv_virsh undefine "$D2" >/dev/null || fail "virsh undefine $D2 failed"
wait_until 10 "$D2 gone from the mount" test ! -e "$MNT/$D2"
sleep 0.5
kill "$INW" 2>/dev/null || true
grep -q "CREATE,ISDIR $D2" "$WORK/events" || grep -q "CREATE $D2" "$WORK/events" ||
  fail "no inotify create event for $D2: $(cat "$WORK/events")"
grep -q "DELETE,ISDIR $D2" "$WORK/events" || grep -q "DELETE $D2" "$WORK/events" ||
  fail "no inotify delete event for $D2: $(cat "$WORK/events")"

step "once $D1 runs: a reference point is a checkpoint, and it exports"
lv_start "$D1"
wait_until 30 "a reference point of the started domain" mkdir "$RPS/rp1"
assert_file_eq "$RPS/rp1/HasAssociatedData" true
assert_eq "$(lv_checkpoints "$D1" | tr '\n' ' ')" "$(cat "$RPS"/rp{0,1}/ResilientChangeTrackingIdentifiers | sort | tr '\n' ' ')" "virsh checkpoint-list $D1"
E=$(new_dir e1)
export_rp "$RPS/rp1" "$E"
assert_eq "$(qemu-img info --output=json "$E/$D1/disks/vda.qcow2" | sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p')" \
  $((64 * 1024 * 1024)) "virtual size of the exported vda"
qemu-img check -q "$E/$D1/disks/vda.qcow2" || fail "the exported vda does not check"
rmdir "$RPS/rp1"
lv_virsh destroy "$D1" >/dev/null 2>&1 || true
umount_rpfs "$MNT"
pass
