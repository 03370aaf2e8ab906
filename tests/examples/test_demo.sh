#!/usr/bin/env bash
# test_demo.sh - runs scripts/demo, as a user would, on the shmcache-demo and
# shmcache-stat of a build directory (SHMC_DEMO_PREBUILT), for a short run.
#
#   test_demo.sh redis BUILD_DIR      the demo starts its own redis-server
#                                     (--origin redis: no fallback)
#   test_demo.sh builtin BUILD_DIR    --origin builtin
#   test_demo.sh interrupt BUILD_DIR  ^C in the middle of the L1 phase
#
# A run must exit 0 with a summary that reports 0 errors for both phases, a
# nonzero L1 hit ratio, no origin call beyond one per expiry of the hot key,
# and shmcache-stat's reports; an interrupted one must exit 130. Either way
# nothing it started may outlive it: the segment, redis-server and its
# directory, the workers, shmcache-stat.
set -euo pipefail

mode=${1:?usage: test_demo.sh redis|builtin|interrupt BUILD_DIR}
build_dir=$(cd "${2:?usage: test_demo.sh redis|builtin|interrupt BUILD_DIR}" && pwd)
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
name=t.demo-$mode.$$
out=$(mktemp)
trap 'rm -f "$out"' EXIT

fail() {
	echo "--- scripts/demo output"
	cat "$out"
	echo "---"
	echo "FAIL: $*" >&2
	exit 1
}

# Runs scripts/demo in a session of its own (so that ^C can be sent to its
# whole process group, as a terminal does) with its output in $out.
demo_start() {
	SHMC_DEMO_PREBUILT=$build_dir setsid bash "$src_dir/scripts/demo" --name "$name" \
		--seconds 2 --workers 2 --keys 2000 "$@" >"$out" 2>&1 </dev/null &
	demo_pid=$!
}

# Nothing of the run may be left: the segment, the redis-server it
# started (pid from its output) and its directory, any process of its group.
leftovers_check() {
	[ ! -e "/dev/shm/shmc.$name" ] || fail "segment $name was left behind"
	local line pid dir
	line=$(grep -o 'started redis-server (pid [0-9]*) on unix socket [^ ]*' "$out" || true)
	if [ -n "$line" ]; then
		pid=$(sed 's/.*(pid \([0-9]*\)).*/\1/' <<<"$line")
		dir=$(dirname "${line##* }")
		if [ -e "/proc/$pid" ] && grep -q redis-server "/proc/$pid/comm" 2>/dev/null; then
			fail "redis-server (pid $pid) was left running"
		fi
		[ ! -e "$dir" ] || fail "the redis-server directory $dir was left behind"
	fi
	for _ in $(seq 50); do
		pgrep -g "$demo_pid" >/dev/null || return 0
		sleep 0.1
	done
	fail "processes of the demo were left running: $(pgrep -a -g "$demo_pid")"
}

summary_check() {
	local tier=$1 ratio
	grep -q "^summary: .*remote tier: $tier" "$out" || fail "no summary with remote tier '$tier'"
	[ "$(grep -c '^    errors         0$' "$out")" = 2 ] ||
		fail "the summary does not report 0 errors for both phases"
	ratio=$(sed -n 's/^    L1 hit ratio   \([0-9.]*\)%.*/\1/p' "$out")
	[ -n "$ratio" ] || fail "no L1 hit ratio in the summary"
	awk -v r="$ratio" 'BEGIN { exit !(r > 0) }' || fail "L1 hit ratio $ratio% is not above 0"
	grep -q '^ *0 of them beyond one per expiry$' "$out" ||
		fail "the hot key's expiries cost more than one origin call each"
	grep -q "^shmcache-stat $name " "$out" || fail "shmcache-stat did not report on $name"
}

case $mode in
redis | builtin)
	demo_start --origin "$mode"
	status=0
	wait "$demo_pid" || status=$?
	[ "$status" = 0 ] || fail "scripts/demo exited with $status"
	if [ "$mode" = redis ]; then
		summary_check Redis
		grep -q 'written through to Redis (SHMC_WRITE_THROUGH); Redis and L1 hold the last' "$out" ||
			fail "no write-through in the summary"
	else
		summary_check 'the built-in origin'
	fi
	leftovers_check
	;;
interrupt)
	demo_start --origin redis --seconds 30
	for _ in $(seq 300); do
		grep -q "^shmcache-stat $name " "$out" && break
		kill -0 "$demo_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "^shmcache-stat $name " "$out" || fail "the L1 phase did not start within 30 s"
	kill -INT -- "-$demo_pid"
	status=0
	wait "$demo_pid" || status=$?
	[ "$status" = 130 ] || fail "scripts/demo exited with $status after ^C, not 130"
	leftovers_check
	;;
*)
	echo "test_demo.sh: unknown mode '$mode'" >&2
	exit 2
	;;
esac
echo "PASS: scripts/demo ($mode)"
