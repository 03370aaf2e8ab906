#!/usr/bin/env bash
# servers.sh - real Redis servers on loopback for the uplink tests.
#
#   servers.sh start-standalone DIR   one redis-server
#   servers.sh start-cluster DIR      six cluster nodes: three masters, three replicas
#   servers.sh restart-node DIR PORT  start again a node of DIR that is not running
#                                     (a test that killed a master puts it back;
#                                     the cluster makes it a replica of its successor)
#   servers.sh stop DIR               stop every server started into DIR
#
# Each server gets a free port chosen at run time (and, for a cluster node, its
# bus port, port + 10000), listens on 127.0.0.1 only, and lives in DIR/node-PORT
# (config, log, pid file, nodes.conf). When the servers are up and, for a
# cluster, every node says cluster_state:ok with all 16384 slots covered and
# every replica is in sync, DIR/env is written: KEY=VALUE lines that a shell
# can source and a C test can read (values never need quoting except paths,
# which are single-quoted):
#
#   standalone: SHMC_REDIS_HOST, SHMC_REDIS_PORT, SHMC_REDIS_PID, SHMC_REDIS_URI,
#               SHMC_REDIS_UNIX_SOCKET and SHMC_REDIS_UNIX_URI (when DIR is
#               short enough for a socket path)
#   cluster:    SHMC_REDIS_CLUSTER_URI (redis-cluster://seed,seed,seed),
#               SHMC_REDIS_CLUSTER_PORTS (comma-separated, all six),
#               SHMC_REDIS_CLUSTER_PID_<port>, SHMC_REDIS_CLUSTER_NODE_TIMEOUT_MS
#   both:       SHMC_SERVERS_SH, SHMC_SERVERS_DIR
#
# Only processes this script started are ever signalled: a pid is taken from
# DIR/node-*/server.pid and acted on only if that process is a redis-server
# whose working directory is its node directory (redis-server chdirs to its
# `dir`), so a recycled pid or someone else's server is never touched.
# A failed start stops what it had started. Missing redis-server or
# redis-cli is an error (exit 2), not a skip: scripts/bootstrap installs them.
set -euo pipefail

prog=${0##*/}
node_timeout_ms=1000
start_timeout_s=60

die() {
	echo "$prog: $*" >&2
	exit 1
}

need_tools() {
	local t
	for t in redis-server redis-cli; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "$prog: $t not found in PATH; run scripts/bootstrap (it installs redis-server)" >&2
			exit 2
		fi
	done
}

now_ms() {
	date +%s%3N
}

# A port that nothing accepts connections on, nor on port + 10000 (a cluster
# node's bus port). Both stay below the kernel's ephemeral range, whose
# ports outgoing connections take at random. Binding can still fail if
# someone takes the port first: the caller then tries another.
pick_port() {
	local port i low=32768 high span
	read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	span=$((low - 10000 - 10000))
	((span >= 1000)) || die "the ephemeral port range starts at $low: no room below it for test servers"
	for ((i = 0; i < 200; i++)); do
		port=$((10000 + (RANDOM * 32768 + RANDOM) % span))
		if port_in_use "$port" || port_in_use $((port + 10000)); then
			continue
		fi
		echo "$port"
		return 0
	done
	die "no free port found"
}

port_in_use() {
	# A connect that succeeds means a listener. (bash's /dev/tcp; the
	# subshell keeps the fd out of this shell.)
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if pid is a live redis-server running in node directory dir.
is_our_server() {
	local pid=$1 dir=$2 comm cwd
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == redis-server* ]] || return 1
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
	[ "$cwd" = "$(cd "$dir" && pwd -P)" ]
}

cli() {
	local port=$1
	shift
	redis-cli -h 127.0.0.1 -p "$port" "$@"
}

write_conf() {
	local dir=$1 port=$2 cluster=$3
	{
		echo "port $port"
		echo "bind 127.0.0.1"
		echo "daemonize no"
		echo "dir $dir"
		echo "logfile $dir/redis.log"
		echo "save \"\""
		echo "appendonly no"
		if [ "$cluster" = yes ]; then
			echo "cluster-enabled yes"
			echo "cluster-config-file nodes.conf"
			echo "cluster-node-timeout $node_timeout_ms"
			# CLUSTER SLOTS leaves out a replica until its replication
			# offset moves; the master's pings move it (default every 10 s)
			echo "repl-ping-replica-period 1"
		elif [ ${#dir} -lt 96 ]; then
			echo "unixsocket $dir/redis.sock"
			echo "unixsocketperm 700"
		fi
	} >"$dir/redis.conf"
}

# Start the server configured in node directory dir and wait until it answers
# on port as itself. Returns 1 (and leaves nothing running) if it did not come
# up, e.g. because the port was taken meanwhile.
launch() {
	local dir=$1 port=$2 pid deadline info
	redis-server "$dir/redis.conf" </dev/null >>"$dir/stdout.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/server.pid"
	deadline=$(($(now_ms) + 10000))
	while (($(now_ms) < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			rm -f "$dir/server.pid"
			return 1
		fi
		info=$(cli "$port" info server 2>/dev/null || true)
		if [[ $info == *"process_id:$pid"* ]]; then
			return 0
		fi
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/server.pid"
	return 1
}

# Make a node directory under base on a free port and start it there; prints
# the port.
start_node() {
	local base=$1 cluster=$2 attempt port dir
	for ((attempt = 0; attempt < 20; attempt++)); do
		port=$(pick_port)
		dir="$base/node-$port"
		rm -rf "$dir"
		mkdir -p "$dir"
		write_conf "$dir" "$port" "$cluster"
		if launch "$dir" "$port"; then
			echo "$port"
			return 0
		fi
		echo "$prog: redis-server on port $port did not start (retrying on another port):" >&2
		tail -n 3 "$dir/redis.log" >&2 2>/dev/null || true
		rm -rf "$dir"
	done
	die "could not start redis-server (see the messages above)"
}

stop_dir() {
	local base=$1 pidfile dir pid i
	[ -d "$base" ] || return 0
	for pidfile in "$base"/node-*/server.pid; do
		[ -e "$pidfile" ] || continue
		dir=${pidfile%/server.pid}
		pid=$(cat "$pidfile" 2>/dev/null || true)
		if is_our_server "$pid" "$dir"; then
			kill -TERM "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do
				is_our_server "$pid" "$dir" || break
				sleep 0.05
			done
			if is_our_server "$pid" "$dir"; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
		rm -f "$pidfile"
	done
	rm -f "$base/env"
}

# On a failed start: stop what was started, then fail.
abort_start() {
	local base=$1
	trap - EXIT
	echo "$prog: start failed; stopping the servers started into $base" >&2
	stop_dir "$base"
	exit 1
}

prepare_dir() {
	local base=$1
	mkdir -p "$base"
	# Leftovers of an earlier run into the same directory are ours: stop them.
	stop_dir "$base"
	rm -rf "$base"/node-*
	case "$base" in *"'"*) die "directory '$base' must not contain a single quote" ;; esac
}

common_env() {
	local base=$1
	echo "SHMC_SERVERS_SH='$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/${BASH_SOURCE[0]##*/}'"
	echo "SHMC_SERVERS_DIR='$base'"
}

start_standalone() {
	local base=$1 port dir pid
	prepare_dir "$base"
	trap 'abort_start "$base"' EXIT
	port=$(start_node "$base" no)
	dir="$base/node-$port"
	pid=$(cat "$dir/server.pid")
	{
		common_env "$base"
		echo "SHMC_REDIS_HOST=127.0.0.1"
		echo "SHMC_REDIS_PORT=$port"
		echo "SHMC_REDIS_PID=$pid"
		echo "SHMC_REDIS_URI=redis://127.0.0.1:$port"
		if [ -S "$dir/redis.sock" ]; then
			echo "SHMC_REDIS_UNIX_SOCKET='$dir/redis.sock'"
			echo "SHMC_REDIS_UNIX_URI='redis+unix://$dir/redis.sock'"
		fi
	} >"$base/env.tmp"
	mv "$base/env.tmp" "$base/env"
	trap - EXIT
	echo "$prog: redis-server on 127.0.0.1:$port (pid $pid); env in $base/env"
}

# Every node sees the cluster healthy, all slots served, all the nodes and
# none of them failing or still in handshake; its CLUSTER SLOTS names every
# node (every replica is listed: clients that read from replicas find them);
# and every replica is in sync with its master.
cluster_ready() {
	local port info repl nodes=$# table slots
	for port in "$@"; do
		info=$(cli "$port" cluster info 2>/dev/null) || return 1
		[[ $info == *"cluster_state:ok"* ]] || return 1
		[[ $info == *"cluster_slots_ok:16384"* ]] || return 1
		[[ $info == *"cluster_known_nodes:$nodes"* ]] || return 1
		table=$(cli "$port" cluster nodes 2>/dev/null) || return 1
		! grep -Eq 'fail|handshake|noaddr' <<<"$table" || return 1
		slots=$(cli "$port" cluster slots 2>/dev/null) || return 1
		[ "$(grep -Ec '^[0-9a-f]{40}$' <<<"$slots")" -ge "$nodes" ] || return 1
		repl=$(cli "$port" info replication 2>/dev/null) || return 1
		if [[ $repl == *"role:slave"* ]]; then
			[[ $repl == *"master_link_status:up"* ]] || return 1
		fi
	done
	return 0
}

wait_cluster_ready() {
	local deadline
	deadline=$(($(now_ms) + start_timeout_s * 1000))
	until cluster_ready "$@"; do
		if (($(now_ms) > deadline)); then
			echo "$prog: the cluster did not become ready within ${start_timeout_s}s:" >&2
			cli "$1" cluster info >&2 || true
			return 1
		fi
		sleep 0.1
	done
}

write_cluster_env() {
	local base=$1 ports=() dir port pid
	for dir in "$base"/node-*; do
		ports+=("${dir##*/node-}")
	done
	{
		common_env "$base"
		echo "SHMC_REDIS_CLUSTER_URI=redis-cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
		echo "SHMC_REDIS_CLUSTER_PORTS=$(
			IFS=,
			echo "${ports[*]}"
		)"
		echo "SHMC_REDIS_CLUSTER_NODE_TIMEOUT_MS=$node_timeout_ms"
		for port in "${ports[@]}"; do
			pid=$(cat "$base/node-$port/server.pid" 2>/dev/null || echo 0)
			echo "SHMC_REDIS_CLUSTER_PID_$port=$pid"
		done
	} >"$base/env.tmp"
	mv "$base/env.tmp" "$base/env"
}

start_cluster() {
	local base=$1 ports=() addrs=() i port
	prepare_dir "$base"
	trap 'abort_start "$base"' EXIT
	for ((i = 0; i < 6; i++)); do
		port=$(start_node "$base" yes)
		ports+=("$port")
		addrs+=("127.0.0.1:$port")
	done
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
		>"$base/cluster-create.log" 2>&1; then
		echo "$prog: redis-cli --cluster create failed:" >&2
		tail -n 20 "$base/cluster-create.log" >&2
		exit 1
	fi
	wait_cluster_ready "${ports[@]}"
	write_cluster_env "$base"
	trap - EXIT
	echo "$prog: redis cluster on 127.0.0.1 ports ${ports[*]}; env in $base/env"
}

restart_node() {
	local base=$1 port=$2 dir pid ports=() d
	dir="$base/node-$port"
	[[ $port =~ ^[0-9]+$ ]] && [ -f "$dir/redis.conf" ] || die "no node $port in $base"
	pid=$(cat "$dir/server.pid" 2>/dev/null || true)
	if is_our_server "$pid" "$dir"; then
		die "node $port (pid $pid) is still running"
	fi
	launch "$dir" "$port" || die "node $port did not start again (see $dir/redis.log)"
	if grep -q '^cluster-enabled yes' "$dir/redis.conf"; then
		for d in "$base"/node-*; do
			ports+=("${d##*/node-}")
		done
		wait_cluster_ready "${ports[@]}" || die "the cluster did not recover after restarting $port"
		write_cluster_env "$base"
	fi
	echo "$prog: node $port running again (pid $(cat "$dir/server.pid"))"
}

usage() {
	echo "usage: $prog start-standalone DIR | start-cluster DIR | restart-node DIR PORT | stop DIR" >&2
	exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
base=$2
[ -n "$base" ] || usage
case "$cmd" in
start-standalone)
	need_tools
	mkdir -p "$base"
	base=$(cd "$base" && pwd -P)
	start_standalone "$base"
	;;
start-cluster)
	need_tools
	mkdir -p "$base"
	base=$(cd "$base" && pwd -P)
	start_cluster "$base"
	;;
restart-node)
	[ $# -eq 3 ] || usage
	need_tools
	base=$(cd "$base" && pwd -P)
	restart_node "$base" "$3"
	;;
stop)
	[ -d "$base" ] || exit 0
	base=$(cd "$base" && pwd -P)
	stop_dir "$base"
	echo "$prog: stopped the servers of $base"
	;;
*)
	usage
	;;
esac
