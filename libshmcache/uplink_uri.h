/*
 * uplink_uri.h - the remote tier's configuration, parsed from the URI given
 * to shmc_opts_set_uplink().
 *
 *   redis://[user:password@]host:port[/db][?options]
 *   redis+unix://[user:password@]/path/to/socket[?options]
 *   redis-cluster://[user:password@]h1:p1,h2:p2,...[?options]   (seed nodes)
 *
 * Options (query string, &-separated, each at most once):
 *   connect_timeout_ms  (default 200)     command_timeout_ms (default 100)
 *   ttl_cap_ms          (default 0: none; local TTL of remote items is
 *                        also capped by the key's remaining remote TTL)
 *   replica_reads=0|1   (cluster: read from replicas, READONLY)
 *   breaker_failures    (default 5: consecutive failures that open it)
 *   breaker_open_ms     (default 1000: open this long before a probe)
 *   health_interval_ms  (default 1000)
 *   batch               (default 64: most keys per pipelined round trip)
 *   write_behind_queue  (default 4096: pending write-behind operations)
 *   user, password      (AUTH; also accepted in the authority)
 */
#ifndef SHMC_UPLINK_URI_H
#define SHMC_UPLINK_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHMC__UPLINK_MAX_SEEDS 16
#define SHMC__HOST_MAX 256
#define SHMC__UNIX_PATH_MAX 108

enum shmc__uplink_kind {
	SHMC__UPLINK_REDIS,         /* one server over TCP */
	SHMC__UPLINK_REDIS_UNIX,    /* one server over a unix socket */
	SHMC__UPLINK_REDIS_CLUSTER, /* seed nodes; the slot map is discovered */
};

/* Where a server listens: host and port, or a unix socket path (port 0). */
struct shmc__endpoint {
	char host[SHMC__HOST_MAX]; /* hostname, IPv4, IPv6 (no brackets), or a path */
	uint16_t port;             /* 0 = host is a unix socket path */
};

struct shmc__uplink_config {
	enum shmc__uplink_kind kind;
	struct shmc__endpoint seeds[SHMC__UPLINK_MAX_SEEDS];
	unsigned nseeds;           /* 1 unless a cluster */
	unsigned db;               /* SELECT after connecting (standalone only) */
	uint32_t connect_timeout_ms;
	uint32_t command_timeout_ms;
	uint32_t ttl_cap_ms;       /* 0 = none */
	bool replica_reads;
	uint32_t breaker_failures;
	uint32_t breaker_open_ms;
	uint32_t health_interval_ms;
	uint32_t batch;
	uint32_t write_behind_queue;
	char user[128];            /* "" = AUTH with the password only */
	char password[256];        /* "" = no AUTH */
};

/* Parse uri into *cfg (defaults for what it does not say). Returns 0, or
 * SHMC_EINVAL with a message naming the bad part written to err (a
 * NUL-terminated string of at most errcap bytes), e.g. "port '99999' is
 * not 1..65535" or "unknown option 'timeout'". */
int shmc__uplink_uri_parse(const char *uri, struct shmc__uplink_config *cfg, char *err,
			   size_t errcap);

#endif
