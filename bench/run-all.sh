#!/bin/bash
# Run every benchmark once and print a summary table of their figures.
#   bench/run-all.sh            (as root; needs about 3 minutes and 20 GiB
#                                free under /var/tmp/rpfs-bench)
# Each benchmark prints its own commentary as it goes; lines starting with
# "@@ " are its figures, gathered here.  Benchmarks never fail on timing:
# they report figures against targets.  The exit status is non-zero only if
# a benchmark could not run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export LC_ALL=C

BENCHES=(export-full export-empty cp-sparse export-after-crash vm-guest) # export-full includes export-diff
OUT=$(mktemp "${TMPDIR:-/tmp}/rpfs-bench-run.XXXX")
trap 'rm -f "$OUT"' EXIT

echo "rpfs benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the figures assume an otherwise idle machine)"
echo "work dir: ${RPFS_BENCH_DIR:-/var/tmp/rpfs-bench} ($(df -T "${RPFS_BENCH_DIR:-/var/tmp}" | awk 'NR == 2 { print $2 }'))"
echo "rpfs: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- core fs 2>/dev/null || echo ' (modified)'); $(qemu-img --version | head -n1); $(nbdcopy --version | head -n1)"
echo

failed=()
start=$SECONDS
for b in "${BENCHES[@]}"; do
  echo "######## bench/$b.sh"
  if ! "bench/$b.sh" 2>&1 | tee -a "$OUT"; then
    failed+=("$b")
  fi
  echo
done

echo "######## summary (total $((SECONDS - start)) s)"
{
  echo "benchmark|figure|value|target"
  echo "---------|------|-----|------"
  sed -n 's/^@@ //p' "$OUT" | sed 's/ | /|/g'
} | column -t -s '|' -o ' | '
if ((${#failed[@]})); then
  echo "benchmarks that did not run to the end: ${failed[*]}"
  exit 1
fi
