#!/bin/bash
# Acting for a caller (docs/design.md): every path an unprivileged caller
# names is resolved once, as that caller, into a descriptor, and rpfs never
# walks it again as root.  Tried here as a hostile local user would:
# 1. the export directory's parent exchanged with a symlink to a directory
#    the user may not write, in a loop, while the user starts exports;
# 2. the hidden assembly directory replaced by a symlink to a root-only
#    directory while the export runs;
# 3. ImportReferencePointMetadata handed /dev/zero, a FIFO, a symlink, a
#    directory, a root-only file and an oversized file.
# Nothing may appear outside what the user may write, nothing root-owned in
# the user's directories, nothing may hang, and the mount stays up.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

U=65534
RACE=$REPO/tests/helpers/race
[[ -x $RACE ]] || fail "$RACE not built (make check builds it)"

# The user operates both systems: vm1 exports in a blink (many tries at
# the race), vm2 slowly (time to hijack its assembly directory).
new_store
add_system vm1 sda:4M
add_system vm2 sda:64M
echo "owner = $U" >>"$STORE/systems/vm1.conf"
printf 'owner = %s\nexport-rate-limit = 16M\n' $U >>"$STORE/systems/vm2.conf"
write_pattern "$(img_of vm2 sda)" 0x6b 8M 48M
MNT=$TMPROOT/mnt
mount_rpfs "$STORE" "$MNT"
as_user mkdir "$MNT/vm1/referencepoints/rp1" "$MNT/vm2/referencepoints/rp1"

# Root's directories the user can see but not write (victim), or not even
# enter (secret), and the user's own playground.
VICTIM=$(new_dir victim)
SECRET=$TMPROOT/secret
mkdir -m 0700 "$SECRET"
echo "root only" >"$SECRET/f"
chmod 0600 "$SECRET/f"
UD=$(new_dir u)
chown "$U:$U" "$UD"

# user_export SYSTEM DIR: the user starts an export of SYSTEM's rp1 into
# DIR; sets RV and JOB from the result line.
user_export() {
  local rp=$MNT/$1/referencepoints/rp1
  as_user bash -c 'printf "%s\n" "$1" > "$2/ExportReferencePoint"' _ \
    "$2" "$rp" 2>/dev/null || true
  read -r RV JOB _ < <(as_user cat "$rp/ExportReferencePoint")
}

step "1. exports while the parent directory is exchanged with a symlink, in a loop"
as_user mkdir "$UD/d"
as_user ln -s "$VICTIM" "$UD/l"
as_user "$RACE" exchange "$UD" d l 60 >/dev/null &
RACER=$!
cleanup_add "stop_bg $RACER"
# Each started export has about even odds of meeting the symlink when it
# creates its directory: ten of them miss a path walked as root with odds
# of 1 in 1000.
started=0 refused=0 i=0
deadline=$((SECONDS + 40))
while ((started < 10 && SECONDS < deadline)); do
  i=$((i + 1))
  user_export vm1 "$UD/d/x$i"
  if [[ $RV == 4096 ]]; then
    started=$((started + 1))
    wait_job_done "$MNT/jobs/$JOB" 120
  else
    refused=$((refused + 1))
  fi
done
stop_bg "$RACER"
echo "   $started exports started, $refused refused"
((started > 0)) || fail "no export started during the race: the test proved nothing"
assert_eq "$(find "$VICTIM" -mindepth 1 | head -5)" "" "entries rpfs made in root's directory"
assert_eq "$(find "$UD" ! -user $U | head -5)" "" "files not owned by the user in their directory"
n=$(find "$UD" -name SHA256SUMS | wc -l)
((n > 0)) || fail "no export completed during the race"
echo "   $n exports completed, all in the user's own directory"

step "2. the assembly directory replaced by a symlink to a root-only directory"
as_user mkdir "$UD/e"
as_user "$RACE" hijack "$UD/e" .vm2. "$SECRET" 5 >"$WORK/hijacks" &
RACER=$!
cleanup_add "stop_bg $RACER"
user_export vm2 "$UD/e"
assert_eq "$RV" 4096 "ReturnValue of the export under attack"
wait_job_done "$MNT/jobs/$JOB" 120
wait "$RACER"
echo "   $(cat "$WORK/hijacks") hijacks; job: $(cat "$MNT/jobs/$JOB/status")"
ls -la "$UD/e" | sed 's/^/   /'
assert_file_eq "$MNT/jobs/$JOB/JobState" 10
assert_match "$(cat "$MNT/jobs/$JOB/ErrorDescription")" "moved or replaced" \
  "why the hijacked export failed"
assert_eq "$(stat -c '%U:%G %a' "$SECRET" "$SECRET/f" | tr '\n' ' ')" \
  "root:root 700 root:root 600 " "owner and mode of root's directory and file"
assert_eq "$(ls -A "$SECRET")" "f" "entries of root's directory"
assert_eq "$(find "$UD" ! -user $U | head -5)" "" "files not owned by the user"
[[ ! -e $UD/e/vm2 ]] || fail "a hijacked export was renamed into place"

step "3. import of files the user names: refused at once, nothing blocks"
mkfifo "$UD/fifo"
chown $U "$UD/fifo"
as_user ln -s "$SECRET/f" "$UD/link"
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' x >"$UD/big"
chmod 0644 "$UD/big"
imp=$MNT/vm1/ImportReferencePointMetadata
export RPFS_TEST_IMPORT=$imp
for spec in "EINVAL /dev/zero" "EINVAL $UD/fifo" "EINVAL $UD/link" \
  "EINVAL $UD" "EINVAL $UD/big" "EACCES $SECRET/f"; do
  errno=${spec%% *} f=${spec#* }
  start=$SECONDS
  # A FIFO or a device would hang a reader that blocks: the timeout turns a
  # hang into a failure instead of a stuck suite.
  export _F=$imp _P="$f"$'\n'"$f"$'\n'
  rc=0
  err=$(timeout 20 setpriv --reuid=$U --regid=$U --clear-groups -- \
    bash -c 'printf "%s" "$_P" > "$_F"' 2>&1) || rc=$?
  ((rc != 124)) || fail "import of $f hung"
  ((rc != 0)) || fail "import of $f succeeded"
  [[ $err == *"$(errno_text "$errno")"* ]] || fail "import of $f: expected $errno, got: $err"
  line=$(as_user cat "$imp")
  echo "   $f: $errno in $((SECONDS - start)) s: ${line#* * }"
done
rpfs_alive "$MNT" || fail "rpfs died"
assert_match "$(as_user cat "$imp")" "^32769 " "result line of the root-only file"
# The system still answers at once (nothing holds its lock).
timeout 10 setpriv --reuid=$U --regid=$U --clear-groups -- \
  mkdir "$MNT/vm1/referencepoints/rp2" || fail "the system is stuck after the import attacks"

umount_rpfs "$MNT"
pass
