#!/bin/bash
# Run the test suite: the unit test binaries given as arguments, then the
# mount tests.  Arguments ending in .sh pick mount tests to run instead of all
# tests/test-*.sh:
#     tests/run-all.sh tests/unit/check_args tests/unit/check_conf
#     tests/run-all.sh tests/test-tree.sh
# One line per test (PASS / FAIL with the tail of its log / SKIP), then
# "N passed, N failed, N skipped".  Logs: tests/work/logs/<test>.log.
# Exit status 1 if anything failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
LOGS=tests/work/logs
TIMEOUT=${RPFS_TEST_TIMEOUT:-600}
mkdir -p "$LOGS"

units=()
scripts=()
for arg in "$@"; do
  case $arg in
    *.sh) scripts+=("$arg") ;;
    *) units+=("$arg") ;;
  esac
done
if ((${#scripts[@]} == 0)); then
  for t in tests/test-*.sh; do
    [[ -e $t ]] && scripts+=("$t")
  done
fi

passed=0 failed=0 skipped=0

# run_one NAME CMD...: run one test under a timeout, print its line.
run_one() {
  local name=$1
  shift
  local log=$LOGS/$name.log start=$SECONDS rc=0
  timeout -k 10 "$TIMEOUT" "$@" </dev/null >"$log" 2>&1 || rc=$?
  local took="($((SECONDS - start))s)"
  case $rc in
    0)
      echo "PASS $name $took"
      passed=$((passed + 1))
      ;;
    77)
      echo "SKIP $name: $(grep -m1 '^SKIP:' "$log" | sed 's/^SKIP: *//')"
      skipped=$((skipped + 1))
      ;;
    *)
      if ((rc == 124 || rc == 137)); then
        echo "FAIL $name $took: timed out after ${TIMEOUT}s"
      else
        echo "FAIL $name $took (status $rc)"
      fi
      tail -n 30 "$log" | sed 's/^/    | /'
      failed=$((failed + 1))
      ;;
  esac
}

for u in "${units[@]}"; do
  [[ $u == */* ]] || u=./$u
  run_one "$(basename "$u")" "$u"
done
for t in "${scripts[@]}"; do
  run_one "$(basename "$t" .sh)" bash "$t"
done

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
