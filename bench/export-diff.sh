#!/bin/bash
# The differential export benchmark: it needs the full export of rp1 first
# and compares against its time, so it is the second half of
# bench/export-full.sh (which prints the figures of both, separately).
exec "$(dirname "$0")/export-full.sh" "$@"
