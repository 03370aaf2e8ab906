#!/usr/bin/env bash
# run.sh - runs one program of examples/ as a user would and checks it.
#
#   run.sh PROGRAM PATTERN...
#
# PROGRAM gets one argument, a segment name of its own (ex.<program>.<pid of
# this script>), so that runs in parallel never share a segment. The check
# passes when PROGRAM exits 0, each PATTERN (an extended regular expression)
# matches a line of its output (stdout and stderr together), and the segment
# is gone afterwards: every example removes what it creates. If it is not,
# it is removed here and the check fails.
set -euo pipefail

prog=${0##*/}
[ $# -ge 2 ] || { echo "usage: $prog PROGRAM PATTERN..." >&2; exit 2; }
program=$1
shift
[ -x "$program" ] || { echo "$prog: $program is not an executable (build it first)" >&2; exit 2; }

name=ex.${program##*/}.$$
segment=/dev/shm/shmc.$name
out=$(mktemp)
trap 'rm -f "$out" "$segment"' EXIT

status=0
"$program" "$name" >"$out" 2>&1 || status=$?
cat "$out" # for ctest --output-on-failure

failed=0
if [ "$status" -ne 0 ]; then
	echo "$prog: FAIL: ${program##*/} $name exited with status $status" >&2
	failed=1
fi
for pattern in "$@"; do
	if ! grep -Eq -- "$pattern" "$out"; then
		echo "$prog: FAIL: no line of the output matches: $pattern" >&2
		failed=1
	fi
done
if [ -e "$segment" ]; then
	echo "$prog: FAIL: ${program##*/} left its segment $segment behind" >&2
	failed=1
fi
[ "$failed" -eq 0 ] && echo "$prog: ${program##*/}: ok"
exit "$failed"
