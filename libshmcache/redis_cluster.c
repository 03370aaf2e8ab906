/*
 * redis_cluster.c - Redis Cluster routing for the uplink (see redis_cluster.h).
 *
 * A cluster is a table of nodes (one shmc__rnode each, created on demand and
 * kept until the cluster is freed) and a routing table that maps each of the
 * 16384 slots to a shard: a master and the replicas that copy it. The
 * routing table is immutable once published: a topology change (a CLUSTER
 * SLOTS refresh that differs, or a MOVED redirect) builds a new table and
 * publishes it with rcu_xchg_pointer (rcu_assign_pointer that hands back the
 * old one); readers find it with rcu_dereference
 * inside a urcu-memb read-side section and never see a half-updated map; the
 * old table is freed after a grace period (synchronize_rcu, in the thread
 * that replaced it, outside any read-side section).
 *
 * exec routes each operation by its key's slot, groups the operations per
 * node (keeping their order, so that a SET and a later GET of one key reach
 * the same node in that order), pipelines each group through
 * shmc__rnode_exec, then acts on the per-operation answers: MOVED patches the
 * slot in a copy of the table and schedules a full refresh, ASK sends the
 * operation once to the named node with ASKING, TRYAGAIN and CLUSTERDOWN back
 * off exponentially (10, 20, 40 ms ...) within the command timeout, and a
 * node that fails as a whole schedules a refresh (its replica may have been
 * promoted) and fails its operations (a replica read falls back to the
 * master instead). tick refreshes the map every few seconds or when
 * scheduled, at most once per 100 ms, and runs every mapped node's health
 * check.
 *
 * Threads: exec, tick and free run in one thread at a time (the uplink
 * thread), as do new and each_node; stats may be called from any thread.
 * Readers of the routing table register themselves with urcu-memb on first
 * use (and unregister when their thread exits), so the table may be read
 * from any thread. A thread that is already registered with urcu-memb by
 * the application must not call in here (liburcu cannot tell, and a second
 * registration corrupts its registry).
 *
 * fork: the child inherits liburcu's registry with the parent's threads in
 * it, as they were. A thread caught inside a read-side section would stay
 * "reading" in the child for ever, and one caught inside synchronize_rcu
 * would leave liburcu's registry lock held: either way the child's first
 * grace period (a new uplink's first topology change) would never end. So
 * a pthread_atfork handler waits, before fork, until no thread is inside a
 * section or a grace period, and holds new ones off until fork returns
 * (fork_guard). The sections are short and never block on anything else.
 */
#include "redis_cluster.h"

#include "alloc.h"
#include "atomic.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>

#include <shmcache.h>

/* ThreadSanitizer cannot see liburcu's grace periods nor its pointer
 * publication (both inside the uninstrumented library): TSAN_RELEASE /
 * TSAN_ACQUIRE (atomic.h) tell it that a reader's section happens after
 * the publication of the table it reads and before the free that follows
 * the grace period. */

#define NODES_MAX 1024 /* Redis suggests clusters of at most 1000 nodes */
#define NO_SHARD UINT16_MAX
#define NO_NODE SHMC__CLUSTER_NO_NODE
#define REFRESH_EVERY_MS 5000 /* periodic CLUSTER SLOTS */
#define REFRESH_GAP_MS 100    /* at most one refresh attempt this often */
#define REFRESH_TRIES 3	      /* nodes asked per attempt */
#define ROUNDS_MAX 5	      /* exec rounds: first try plus redirects / retries */
#define BACKOFF_FIRST_MS 10   /* TRYAGAIN / CLUSTERDOWN: 10, 20, 40 ... ms */

_Static_assert(NODES_MAX < NO_NODE, "node indexes must fit below NO_NODE");
_Static_assert(SHMC__CLUSTER_SLOTS < NO_SHARD, "shard indexes must fit below NO_SHARD");

/* A master and the replicas that copy it. Node indexes into cl->nodes. */
struct shard {
	uint16_t master;
	uint16_t nreplicas;
	uint16_t replica[SHMC__CLUSTER_MAX_REPLICAS];
};

/* The routing table: immutable once published. One allocation: the struct,
 * then nshards shards. */
struct route_table {
	uint32_t nshards;
	struct shard *shards;			  /* right after the struct */
	uint64_t node_used[NODES_MAX / 64];	  /* bit i: node i is in a shard */
	uint16_t slot_shard[SHMC__CLUSTER_SLOTS]; /* index into shards, NO_SHARD = unserved */
};

struct shmc__rcluster {
	struct shmc__uplink_config cfg;

	/* RCU-published; NULL until a map was loaded. Replaced by the uplink
	 * thread only; read under urcu_memb_read_lock. */
	struct route_table *table;

	/* Append-only: nodes[i] for i < nnodes never changes. Written by the
	 * uplink thread (the entry, then nnodes with a write barrier); read by
	 * any thread after reading nnodes. */
	struct shmc__rnode *nodes[NODES_MAX];
	uint32_t nnodes;

	/* Uplink thread only. */
	bool refresh_due;	  /* a redirect or a node failure asked for one */
	uint64_t last_refresh_ms; /* last successful refresh */
	uint64_t last_attempt_ms; /* last attempt, successful or not */
	uint32_t refresh_cursor;  /* next node to ask for CLUSTER SLOTS */
	uint32_t replica_cursor;  /* spreads replica reads */

	/* Written by the uplink thread, read by any (uatomic). */
	uint64_t moved, ask, tryagain, clusterdown, refreshes;
};

/* ------------------------------------------------------------------ slots */

/* clang-format off */
static const uint16_t crc16_table[256] = {
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
	0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
	0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
	0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
	0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
	0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
	0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
	0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
	0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
	0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
	0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
	0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
	0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
	0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
	0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
	0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
	0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
	0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
	0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
	0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
	0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
	0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
	0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
	0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
	0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
	0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
	0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
	0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
	0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
	0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};
/* clang-format on */

/* CRC16-XMODEM: polynomial 0x1021, initial value 0, no reflection. */
static uint16_t crc16(const unsigned char *p, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++)
		crc = (uint16_t)(crc << 8) ^ crc16_table[((crc >> 8) ^ p[i]) & 0xff];
	return crc;
}

uint16_t shmc__cluster_slot(const void *key, size_t klen)
{
	const unsigned char *k = key;
	const unsigned char *open = klen ? memchr(k, '{', klen) : NULL;

	if (open) {
		size_t after = (size_t)(open - k) + 1;
		const unsigned char *close = memchr(open + 1, '}', klen - after);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) &
			       (SHMC__CLUSTER_SLOTS - 1);
	}
	return crc16(k, klen) & (SHMC__CLUSTER_SLOTS - 1);
}

/* ------------------------------------------------------------- utilities */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_us(uint32_t us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void put_err(char *err, size_t errcap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void put_err(char *err, size_t errcap, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errcap)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
}

static void count(uint64_t *counter)
{
	uatomic_add(counter, 1);
}

static bool endpoint_equal(const struct shmc__endpoint *a, const struct shmc__endpoint *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* ---------------------------------------------------- read-side sections */

/* urcu-memb needs each reading thread registered, and unregistered before
 * it exits (its registry points into the thread's TLS). A thread registers
 * on its first read; a thread-specific key's destructor unregisters it. If
 * no key can be had, each read section registers and unregisters around
 * itself instead (slower: a global mutex, but correct).
 *
 * fork_guard keeps fork out of read-side sections and grace periods (see
 * the top of the file): sections, registrations and synchronize_rcu count
 * themselves in fork_guard.active; a pthread_atfork handler raises
 * fork_guard.pending (new entrants then wait) and waits for active to reach
 * 0. Plain counters rather than a pthread rwlock: a rwlock copied into the
 * child while a thread of the parent waited on it stays unusable there, and
 * these can simply be reset. */
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static pthread_key_t reader_key;
static bool reader_key_ok;
static _Thread_local bool reader_registered;
static struct {
	unsigned long active;  /* threads inside a guarded region */
	unsigned long pending; /* 1 while a fork is being prepared */
} fork_guard;

static void guard_enter(void)
{
	for (;;) {
		while (uatomic_read(&fork_guard.pending))
			sleep_us(50);
		(void)uatomic_add_return(&fork_guard.active, 1); /* full barrier */
		if (!uatomic_read(&fork_guard.pending))
			return;
		(void)uatomic_add_return(&fork_guard.active, -1);
	}
}

static void guard_leave(void)
{
	(void)uatomic_add_return(&fork_guard.active, -1);
}

static void fork_prepare(void)
{
	(void)uatomic_xchg(&fork_guard.pending, 1); /* full barrier */
	while (uatomic_read(&fork_guard.active))
		sleep_us(50);
}

static void fork_parent(void)
{
	uatomic_set(&fork_guard.pending, 0);
}

static void fork_child(void)
{
	/* Only the forking thread lives on, and it was in no guarded region. */
	uatomic_set(&fork_guard.active, 0);
	uatomic_set(&fork_guard.pending, 0);
}

static void reader_thread_exit(void *unused)
{
	(void)unused;
	if (reader_registered) {
		guard_enter();
		urcu_memb_unregister_thread();
		reader_registered = false;
		guard_leave();
	}
}

static void reader_init_once(void)
{
	reader_key_ok = pthread_key_create(&reader_key, reader_thread_exit) == 0;
	/* Fails only for ENOMEM; then fork during a section is the hazard
	 * described at the top of the file. */
	(void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void reader_begin(void)
{
	pthread_once(&reader_once, reader_init_once);
	guard_enter();
	if (!reader_registered) {
		urcu_memb_register_thread();
		reader_registered = true;
		if (reader_key_ok)
			pthread_setspecific(reader_key, (void *)1);
	}
	urcu_memb_read_lock();
}

static void reader_end(void)
{
	urcu_memb_read_unlock();
	if (!reader_key_ok) {
		urcu_memb_unregister_thread();
		reader_registered = false;
	}
	guard_leave();
}

/* Wait for every read-side section open now to end. Not from inside one. */
static void grace_period(void)
{
	assert(!reader_registered || !urcu_memb_read_ongoing());
	pthread_once(&reader_once, reader_init_once);
	guard_enter();
	urcu_memb_synchronize_rcu();
	guard_leave();
}

/* ---------------------------------------------------------------- nodes */

static uint32_t nodes_count(const struct shmc__rcluster *cl)
{
	uint32_t n = CMM_LOAD_SHARED(cl->nnodes);

	cmm_smp_rmb(); /* pairs with node_get's wmb: the entries are visible */
	return n;
}

static int node_find(const struct shmc__rcluster *cl, const struct shmc__endpoint *ep)
{
	uint32_t n = nodes_count(cl);

	for (uint32_t i = 0; i < n; i++)
		if (endpoint_equal(shmc__rnode_endpoint(cl->nodes[i]), ep))
			return (int)i;
	return -1;
}

/* The index of the node at ep, created if new; -1 with err set if the
 * table is full or memory is short. Uplink thread only. */
static int node_get(struct shmc__rcluster *cl, const struct shmc__endpoint *ep, char *err,
		    size_t errcap)
{
	int i = node_find(cl, ep);
	if (i >= 0)
		return i;
	uint32_t n = cl->nnodes;
	if (n >= NODES_MAX) {
		put_err(err, errcap, "cluster: more than %d nodes; %s:%u left out", NODES_MAX,
			ep->host, (unsigned)ep->port);
		return -1;
	}
	struct shmc__rnode *node = shmc__rnode_new(ep, &cl->cfg);
	if (!node) {
		put_err(err, errcap, "cluster: out of memory for node %s:%u", ep->host,
			(unsigned)ep->port);
		return -1;
	}
	/* READONLY is harmless on a master and lets a replica serve reads;
	 * setting it on every node covers nodes that change role later. */
	if (cl->cfg.replica_reads)
		shmc__rnode_set_readonly(node, true);
	cl->nodes[n] = node;
	cmm_smp_wmb();
	CMM_STORE_SHARED(cl->nnodes, n + 1);
	return (int)n;
}

/* ------------------------------------------------------ CLUSTER SLOTS map */

static const char *reply_type_name(int type)
{
	switch (type) {
	case REDIS_REPLY_STRING:
		return "a string";
	case REDIS_REPLY_ARRAY:
		return "an array";
	case REDIS_REPLY_INTEGER:
		return "an integer";
	case REDIS_REPLY_NIL:
		return "nil";
	case REDIS_REPLY_STATUS:
		return "a status";
	case REDIS_REPLY_ERROR:
		return "an error";
	default:
		return "of an unknown type";
	}
}

static void map_reset(struct shmc__cluster_map *m)
{
	shmc__free(m->ranges);
	shmc__free(m->nodes);
	memset(m, 0, sizeof *m);
}

void shmc__cluster_map_free(struct shmc__cluster_map *m)
{
	if (m)
		map_reset(m);
}

/* Index of ep among the map's nodes, appended if new; -1 on ENOMEM, -2 if
 * there are too many. */
static int map_node(struct shmc__cluster_map *m, size_t *cap, const struct shmc__endpoint *ep)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (endpoint_equal(&m->nodes[i], ep))
			return (int)i;
	if (m->nnodes >= NODES_MAX)
		return -2;
	if (m->nnodes == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct shmc__endpoint *grown = shmc__zalloc(ncap * sizeof *grown);
		if (!grown)
			return -1;
		if (m->nnodes)
			memcpy(grown, m->nodes, m->nnodes * sizeof *grown);
		shmc__free(m->nodes);
		m->nodes = grown;
		*cap = ncap;
	}
	m->nodes[m->nnodes] = *ep;
	return (int)m->nnodes++;
}

/* Parse one slot number (entry i, element what). */
static int parse_slot(const redisReply *r, size_t i, const char *what, uint16_t *out, char *err,
		      size_t errcap)
{
	if (!r || r->type != REDIS_REPLY_INTEGER) {
		put_err(err, errcap, "CLUSTER SLOTS: entry %zu: %s slot is %s, not an integer", i,
			what, r ? reply_type_name(r->type) : "missing");
		return SHMC_EUPLINK;
	}
	if (r->integer < 0 || r->integer >= SHMC__CLUSTER_SLOTS) {
		put_err(err, errcap, "CLUSTER SLOTS: entry %zu: %s slot %lld is not in 0..%d", i,
			what, r->integer, SHMC__CLUSTER_SLOTS - 1);
		return SHMC_EUPLINK;
	}
	*out = (uint16_t)r->integer;
	return 0;
}

/* Parse node element j of entry i into *ep. *unknown is set for host "?". */
static int parse_node(const redisReply *r, size_t i, size_t j, const char *asked_host,
		      struct shmc__endpoint *ep, bool *unknown, char *err, size_t errcap)
{
	*unknown = false;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		put_err(err, errcap, "CLUSTER SLOTS: entry %zu: node %zu is %s, not an array", i, j,
			r ? reply_type_name(r->type) : "missing");
		return SHMC_EUPLINK;
	}
	if (r->elements < 2 || !r->element) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu: node %zu has %zu elements, needs host and port",
			i, j, r->elements);
		return SHMC_EUPLINK;
	}
	const redisReply *host = r->element[0], *port = r->element[1];
	if (!host || host->type != REDIS_REPLY_STRING || (host->len && !host->str)) {
		put_err(err, errcap, "CLUSTER SLOTS: entry %zu: node %zu: host is %s, not a string",
			i, j, host ? reply_type_name(host->type) : "missing");
		return SHMC_EUPLINK;
	}
	if (host->len >= sizeof ep->host || (host->len && memchr(host->str, '\0', host->len))) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu: node %zu: host of %zu bytes is not a host name",
			i, j, host->len);
		return SHMC_EUPLINK;
	}
	if (!port || port->type != REDIS_REPLY_INTEGER) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu: node %zu: port is %s, not an integer", i, j,
			port ? reply_type_name(port->type) : "missing");
		return SHMC_EUPLINK;
	}
	if (port->integer < 1 || port->integer > 65535) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu: node %zu: port %lld is not in 1..65535", i, j,
			port->integer);
		return SHMC_EUPLINK;
	}
	if (r->elements >= 3) { /* the node id; later elements (metadata) are not ours */
		const redisReply *id = r->element[2];
		if (!id || id->type != REDIS_REPLY_STRING) {
			put_err(err, errcap,
				"CLUSTER SLOTS: entry %zu: node %zu: id is %s, not a string", i, j,
				id ? reply_type_name(id->type) : "missing");
			return SHMC_EUPLINK;
		}
	}
	memset(ep, 0, sizeof *ep);
	ep->port = (uint16_t)port->integer;
	if (host->len == 0) {
		/* "the node that answered": its own address. */
		if (!asked_host || !*asked_host || strlen(asked_host) >= sizeof ep->host) {
			put_err(err, errcap, "CLUSTER SLOTS: entry %zu: node %zu has an empty host",
				i, j);
			return SHMC_EUPLINK;
		}
		strcpy(ep->host, asked_host);
	} else if (host->len == 1 && host->str[0] == '?') {
		*unknown = true; /* cluster-preferred-endpoint-type unknown-endpoint */
	} else {
		memcpy(ep->host, host->str, host->len);
	}
	return 0;
}

static int parse_entry(const redisReply *e, size_t i, const char *asked_host,
		       struct shmc__cluster_map *m, size_t *nodes_cap, uint8_t *seen, char *err,
		       size_t errcap)
{
	struct shmc__cluster_range *range = &m->ranges[i];
	int rc;

	if (!e || e->type != REDIS_REPLY_ARRAY) {
		put_err(err, errcap, "CLUSTER SLOTS: entry %zu is %s, not an array", i,
			e ? reply_type_name(e->type) : "missing");
		return SHMC_EUPLINK;
	}
	if (e->elements < 3 || !e->element) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu has %zu elements, needs first slot, last slot "
			"and master",
			i, e->elements);
		return SHMC_EUPLINK;
	}
	if ((rc = parse_slot(e->element[0], i, "first", &range->first, err, errcap)) ||
	    (rc = parse_slot(e->element[1], i, "last", &range->last, err, errcap)))
		return rc;
	if (range->first > range->last) {
		put_err(err, errcap,
			"CLUSTER SLOTS: entry %zu: first slot %u is after last slot %u", i,
			(unsigned)range->first, (unsigned)range->last);
		return SHMC_EUPLINK;
	}
	for (unsigned s = range->first; s <= range->last; s++) {
		if (seen[s / 8] & (1u << (s % 8))) {
			put_err(err, errcap, "CLUSTER SLOTS: entry %zu: slot %u is assigned twice",
				i, s);
			return SHMC_EUPLINK;
		}
		seen[s / 8] |= (uint8_t)(1u << (s % 8));
	}

	range->master = NO_NODE;
	range->nreplicas = 0;
	for (size_t j = 2; j < e->elements; j++) {
		struct shmc__endpoint ep;
		bool unknown;
		if ((rc = parse_node(e->element[j], i, j - 2, asked_host, &ep, &unknown, err,
				     errcap)))
			return rc;
		if (unknown)
			continue;
		if (j > 2 && range->nreplicas == SHMC__CLUSTER_MAX_REPLICAS)
			continue;
		int idx = map_node(m, nodes_cap, &ep);
		if (idx == -1) {
			put_err(err, errcap, "CLUSTER SLOTS: out of memory");
			return SHMC_ENOMEM;
		}
		if (idx < 0) {
			put_err(err, errcap, "CLUSTER SLOTS: more than %d nodes", NODES_MAX);
			return SHMC_EUPLINK;
		}
		if (j == 2)
			range->master = (uint16_t)idx;
		else
			range->replica[range->nreplicas++] = (uint16_t)idx;
	}
	return 0;
}

int shmc__cluster_map_parse(const struct redisReply *reply, const char *asked_host,
			    struct shmc__cluster_map *out, char *err, size_t errcap)
{
	const redisReply *r = (const redisReply *)reply;
	uint8_t seen[SHMC__CLUSTER_SLOTS / 8] = {0};
	size_t nodes_cap = 0;
	int rc;

	memset(out, 0, sizeof *out);
	if (err && errcap)
		err[0] = '\0';
	if (!r) {
		put_err(err, errcap, "CLUSTER SLOTS: no reply");
		return SHMC_EUPLINK;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		put_err(err, errcap, "CLUSTER SLOTS: error reply: %.*s",
			(int)(r->len < 120 ? r->len : 120), r->str ? r->str : "");
		return SHMC_EUPLINK;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		put_err(err, errcap, "CLUSTER SLOTS: reply is %s, not an array",
			reply_type_name(r->type));
		return SHMC_EUPLINK;
	}
	if (r->elements == 0 || !r->element) {
		put_err(err, errcap, "CLUSTER SLOTS: no slot is assigned to any node");
		return SHMC_EUPLINK;
	}
	if (r->elements > SHMC__CLUSTER_SLOTS) {
		put_err(err, errcap, "CLUSTER SLOTS: %zu entries for %d slots", r->elements,
			SHMC__CLUSTER_SLOTS);
		return SHMC_EUPLINK;
	}
	out->ranges = shmc__zalloc(r->elements * sizeof *out->ranges);
	if (!out->ranges) {
		put_err(err, errcap, "CLUSTER SLOTS: out of memory");
		return SHMC_ENOMEM;
	}
	out->nranges = r->elements;
	for (size_t i = 0; i < r->elements; i++) {
		if ((rc = parse_entry(r->element[i], i, asked_host, out, &nodes_cap, seen, err,
				      errcap))) {
			map_reset(out);
			return rc;
		}
	}
	return 0;
}

/* -------------------------------------------------------- routing tables */

static struct route_table *table_alloc(uint32_t nshards)
{
	struct route_table *t = shmc__zalloc(sizeof *t + (size_t)nshards * sizeof(struct shard));

	if (!t)
		return NULL;
	t->nshards = nshards;
	t->shards = (struct shard *)(t + 1);
	return t;
}

static void table_mark_used(struct route_table *t, uint16_t node)
{
	if (node != NO_NODE)
		t->node_used[node / 64] |= UINT64_C(1) << (node % 64);
}

static bool table_uses(const struct route_table *t, uint32_t node)
{
	return t->node_used[node / 64] & (UINT64_C(1) << (node % 64));
}

static bool table_equal(const struct route_table *a, const struct route_table *b)
{
	return a->nshards == b->nshards &&
	       memcmp(a->slot_shard, b->slot_shard, sizeof a->slot_shard) == 0 &&
	       memcmp(a->node_used, b->node_used, sizeof a->node_used) == 0 &&
	       memcmp(a->shards, b->shards, a->nshards * sizeof *a->shards) == 0;
}

/* A routing table for map: the map's nodes become cluster nodes (created
 * as needed); ranges with the same master share one shard, whose replicas
 * are the union of theirs. NULL with err set on failure. Uplink thread. */
static struct route_table *table_from_map(struct shmc__rcluster *cl,
					  const struct shmc__cluster_map *m, char *err,
					  size_t errcap)
{
	uint16_t *node_of = shmc__zalloc(m->nnodes * sizeof *node_of);
	struct route_table *t = table_alloc((uint32_t)m->nranges);

	if (!node_of || !t) {
		put_err(err, errcap, "cluster: out of memory for the routing table");
		goto fail;
	}
	for (size_t k = 0; k < m->nnodes; k++) {
		int idx = node_get(cl, &m->nodes[k], err, errcap);
		if (idx < 0)
			goto fail;
		node_of[k] = (uint16_t)idx;
	}
	for (size_t s = 0; s < SHMC__CLUSTER_SLOTS; s++)
		t->slot_shard[s] = NO_SHARD;
	uint32_t nshards = 0;
	for (size_t i = 0; i < m->nranges; i++) {
		const struct shmc__cluster_range *r = &m->ranges[i];
		if (r->master == NO_NODE)
			continue; /* unserved: slot_shard stays NO_SHARD */
		uint16_t master = node_of[r->master];
		uint32_t sh;
		for (sh = 0; sh < nshards; sh++)
			if (t->shards[sh].master == master)
				break;
		if (sh == nshards) {
			t->shards[sh].master = master;
			table_mark_used(t, master);
			nshards++;
		}
		struct shard *shard = &t->shards[sh];
		for (unsigned k = 0; k < r->nreplicas; k++) {
			uint16_t replica = node_of[r->replica[k]];
			bool known = replica == master;
			for (unsigned q = 0; q < shard->nreplicas && !known; q++)
				known = shard->replica[q] == replica;
			if (!known && shard->nreplicas < SHMC__CLUSTER_MAX_REPLICAS) {
				shard->replica[shard->nreplicas++] = replica;
				table_mark_used(t, replica);
			}
		}
		for (unsigned s = r->first; s <= r->last; s++)
			t->slot_shard[s] = (uint16_t)sh;
	}
	t->nshards = nshards; /* the allocation may hold more; they stay unused */
	shmc__free(node_of);
	return t;
fail:
	shmc__free(node_of);
	shmc__free(t);
	return NULL;
}

/* Replace the published table with t (may be NULL) and free the old one
 * after a grace period. Must not be called inside a read-side section.
 * Uplink thread. */
static void table_publish(struct shmc__rcluster *cl, struct route_table *t)
{
	TSAN_RELEASE(&cl->table);
	struct route_table *old = rcu_xchg_pointer(&cl->table, t);
	if (old) {
		grace_period();
		TSAN_ACQUIRE(&cl->table);
		shmc__free(old);
	}
}

struct slots_ctx {
	const char *asked_host;
	struct shmc__cluster_map map;
	char err[160];
};

static int slots_reply(void *arg, const struct redisReply *reply)
{
	struct slots_ctx *ctx = arg;

	return shmc__cluster_map_parse(reply, ctx->asked_host, &ctx->map, ctx->err,
				       sizeof ctx->err);
}

/* Ask one node for CLUSTER SLOTS and publish the table if it changed.
 * Returns 0 or an error (err says why). Uplink thread. */
static int refresh_from(struct shmc__rcluster *cl, uint32_t node, char *err, size_t errcap)
{
	static const char *argv[] = {"CLUSTER", "SLOTS"};
	static const size_t argvlen[] = {7, 5};
	struct slots_ctx ctx = {.asked_host = shmc__rnode_endpoint(cl->nodes[node])->host};
	char node_err[160] = "";

	int rc = shmc__rnode_command(cl->nodes[node], 2, argv, argvlen, slots_reply, &ctx, node_err,
				     sizeof node_err);
	if (rc) {
		put_err(err, errcap, "%s", ctx.err[0] ? ctx.err : node_err);
		shmc__cluster_map_free(&ctx.map);
		return rc;
	}
	struct route_table *t = table_from_map(cl, &ctx.map, err, errcap);
	shmc__cluster_map_free(&ctx.map);
	if (!t)
		return SHMC_ENOMEM;
	if (cl->table && table_equal(cl->table, t))
		shmc__free(t);
	else
		table_publish(cl, t);
	count(&cl->refreshes);
	return 0;
}

/* Load the slot map from the first node that answers, trying at most
 * REFRESH_TRIES nodes: those whose breaker is not open first, starting
 * where the last attempt stopped. Uplink thread. */
static int refresh(struct shmc__rcluster *cl, uint64_t now)
{
	uint32_t n = cl->nnodes, tried = 0;
	char err[160] = "no node to ask";
	int rc = SHMC_EUPLINK;

	cl->last_attempt_ms = now;
	for (int pass = 0; pass < 2 && tried < REFRESH_TRIES; pass++) {
		for (uint32_t k = 0; k < n && tried < REFRESH_TRIES; k++) {
			uint32_t i = (cl->refresh_cursor + k) % n;
			bool open = shmc__rnode_breaker(cl->nodes[i]) == SHMC__BREAKER_OPEN;
			if (open != (pass == 1))
				continue;
			tried++;
			rc = refresh_from(cl, i, err, sizeof err);
			if (rc == 0) {
				cl->refresh_cursor = i + 1;
				cl->refresh_due = false;
				cl->last_refresh_ms = now;
				return 0;
			}
		}
	}
	cl->refresh_cursor++;
	return rc;
}

/* Refresh now if one is due and the last attempt is old enough. */
static void refresh_if_due(struct shmc__rcluster *cl, bool force)
{
	uint64_t now = now_ms();
	bool due = force || !cl->table || cl->refresh_due ||
		   now - cl->last_refresh_ms >= REFRESH_EVERY_MS;

	if (due && (cl->last_attempt_ms == 0 || now - cl->last_attempt_ms >= REFRESH_GAP_MS))
		refresh(cl, now);
}

/* ---------------------------------------------------------- the cluster */

int shmc__rcluster_new(const struct shmc__uplink_config *cfg, struct shmc__rcluster **out)
{
	assert(cfg && out && cfg->nseeds > 0 && cfg->nseeds <= SHMC__UPLINK_MAX_SEEDS);
	struct shmc__rcluster *cl = shmc__zalloc(sizeof *cl);

	*out = NULL;
	if (!cl)
		return SHMC_ENOMEM;
	cl->cfg = *cfg;
	for (unsigned i = 0; i < cfg->nseeds; i++) {
		if (node_get(cl, &cfg->seeds[i], NULL, 0) < 0) {
			shmc__rcluster_free(cl);
			return SHMC_ENOMEM;
		}
	}
	refresh_if_due(cl, true);
	*out = cl;
	return 0;
}

void shmc__rcluster_free(struct shmc__rcluster *cl)
{
	if (!cl)
		return;
	table_publish(cl, NULL);
	for (uint32_t i = 0; i < cl->nnodes; i++)
		shmc__rnode_free(cl->nodes[i]);
	shmc__free(cl);
}

/* What exec knows of one operation between rounds. */
struct op_state {
	uint16_t slot;
	uint16_t node;	   /* this round's target */
	uint16_t ask_node; /* NO_NODE, or the node an ASK named: next round goes there */
	bool done;
	bool asking;	 /* this round: send ASKING first */
	bool on_replica; /* this round goes to a replica */
	bool to_master;	 /* a replica failed: read from the master */
	bool moved;	 /* this round's answer was MOVED to moved_node */
	uint16_t moved_node;
};

static void op_fail(struct shmc__rop *op, struct op_state *st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void op_fail(struct shmc__rop *op, struct op_state *st, const char *fmt, ...)
{
	va_list ap;

	op->rc = SHMC_EUPLINK;
	va_start(ap, fmt);
	vsnprintf(op->err, sizeof op->err, fmt, ap);
	va_end(ap);
	st->done = true;
}

/* Pick each pending operation's node for this round from the published
 * table. Operations that cannot be routed fail. Returns how many remain. */
static size_t route(struct shmc__rcluster *cl, struct shmc__rop *ops, struct op_state *st,
		    size_t nops)
{
	size_t pending = 0;

	reader_begin();
	const struct route_table *t = rcu_dereference(cl->table);
	TSAN_ACQUIRE(&cl->table);
	for (size_t i = 0; i < nops; i++) {
		struct op_state *s = &st[i];
		if (s->done)
			continue;
		s->asking = false;
		s->on_replica = false;
		if (s->ask_node != NO_NODE) {
			s->node = s->ask_node;
			s->asking = true;
			s->ask_node = NO_NODE;
			pending++;
			continue;
		}
		if (!t) {
			op_fail(&ops[i], s,
				"cluster: no slot map yet (no node answered CLUSTER SLOTS)");
			continue;
		}
		uint16_t sh = t->slot_shard[s->slot];
		if (sh == NO_SHARD) {
			op_fail(&ops[i], s, "cluster: slot %u is not served by any node",
				(unsigned)s->slot);
			continue;
		}
		const struct shard *shard = &t->shards[sh];
		s->node = shard->master;
		if (ops[i].kind == SHMC__ROP_GET && cl->cfg.replica_reads && !s->to_master &&
		    shard->nreplicas) {
			uint32_t start = cl->replica_cursor++;
			for (unsigned k = 0; k < shard->nreplicas; k++) {
				uint16_t r = shard->replica[(start + k) % shard->nreplicas];
				if (shmc__rnode_breaker(cl->nodes[r]) == SHMC__BREAKER_CLOSED &&
				    shmc__rnode_available(cl->nodes[r])) {
					s->node = r;
					s->on_replica = true;
					break;
				}
			}
		}
		pending++;
	}
	TSAN_RELEASE(&cl->table);
	reader_end();
	return pending;
}

/* Copy of t with each operation's MOVED slot pointed at the shard whose
 * master is the named node (a new shard if that node masters none yet).
 * NULL if out of memory. */
static struct route_table *table_with_moves(const struct route_table *t, const struct op_state *st,
					    size_t nops)
{
	uint32_t extra = 0;

	for (size_t i = 0; i < nops; i++)
		if (st[i].moved)
			extra++;
	struct route_table *n = table_alloc(t->nshards + extra);
	if (!n)
		return NULL;
	memcpy(n->node_used, t->node_used, sizeof n->node_used);
	memcpy(n->slot_shard, t->slot_shard, sizeof n->slot_shard);
	memcpy(n->shards, t->shards, t->nshards * sizeof *n->shards);
	n->nshards = t->nshards;
	for (size_t i = 0; i < nops; i++) {
		if (!st[i].moved)
			continue;
		uint16_t node = st[i].moved_node;
		uint32_t sh;
		for (sh = 0; sh < n->nshards; sh++)
			if (n->shards[sh].master == node)
				break;
		if (sh == n->nshards) {
			memset(&n->shards[sh], 0, sizeof n->shards[sh]);
			n->shards[sh].master = node;
			n->nshards++;
			table_mark_used(n, node);
		}
		n->slot_shard[st[i].slot] = (uint16_t)sh;
	}
	return n;
}

/* Send this round's operations, one pipeline per node, and sort out the
 * answers. Returns true if some operation asks for a back-off. */
static bool dispatch(struct shmc__rcluster *cl, struct shmc__rop *ops, struct op_state *st,
		     size_t nops, struct shmc__rop *batch, uint32_t *members, bool *grouped)
{
	bool backoff = false, moved = false;

	memset(grouped, 0, nops * sizeof *grouped);
	for (size_t first = 0; first < nops; first++) {
		if (st[first].done || grouped[first])
			continue;
		uint16_t node = st[first].node;
		size_t k = 0;
		for (size_t i = first; i < nops; i++) {
			if (st[i].done || grouped[i] || st[i].node != node)
				continue;
			grouped[i] = true;
			members[k] = (uint32_t)i;
			batch[k] = ops[i];
			batch[k].asking = st[i].asking;
			batch[k].rc = 0;
			batch[k].val_out = NULL;
			batch[k].vlen_out = 0;
			batch[k].pttl_ms = -1;
			batch[k].err[0] = '\0';
			k++;
		}
		int node_rc = shmc__rnode_exec(cl->nodes[node], batch, k);
		if (node_rc)
			cl->refresh_due = true; /* its replica may have been promoted */
		for (size_t q = 0; q < k; q++) {
			uint32_t i = members[q];
			struct shmc__rop *op = &ops[i], *res = &batch[q];
			struct op_state *s = &st[i];
			op->rc = res->rc;
			op->val_out = res->val_out;
			op->vlen_out = res->vlen_out;
			op->pttl_ms = res->pttl_ms;
			op->slot = res->slot;
			op->redirect_to = res->redirect_to;
			memcpy(op->err, res->err, sizeof op->err);
			switch (res->rc) {
			case 0:
			case SHMC_ENOTFOUND:
				s->done = true;
				break;
			case SHMC__ROP_MOVED: {
				count(&cl->moved);
				int to = node_get(cl, &res->redirect_to, op->err, sizeof op->err);
				if (to < 0) {
					op->rc = SHMC_EUPLINK;
					s->done = true;
					break;
				}
				s->moved = true;
				s->moved_node = (uint16_t)to;
				moved = true;
				break;
			}
			case SHMC__ROP_ASK: {
				count(&cl->ask);
				int to = node_get(cl, &res->redirect_to, op->err, sizeof op->err);
				if (to < 0) {
					op->rc = SHMC_EUPLINK;
					s->done = true;
					break;
				}
				s->ask_node = (uint16_t)to;
				break;
			}
			case SHMC__ROP_TRYAGAIN:
				count(&cl->tryagain);
				backoff = true;
				break;
			case SHMC__ROP_CLUSTERDOWN:
				count(&cl->clusterdown);
				backoff = true;
				break;
			default:
				if (s->on_replica) {
					/* replica reads are an optimisation: whatever
					 * went wrong, the master is asked next round */
					s->to_master = true;
					break;
				}
				if (res->rc != SHMC_EUPLINK && !op->err[0])
					snprintf(op->err, sizeof op->err, "%s",
						 shmc_strerror(res->rc));
				op->rc = SHMC_EUPLINK;
				s->done = true;
				break;
			}
		}
	}

	if (moved) {
		/* The uplink thread is the only writer, so cl->table is stable
		 * here without a read-side section. */
		struct route_table *t = cl->table;
		struct route_table *n = t ? table_with_moves(t, st, nops) : NULL;
		if (n)
			table_publish(cl, n);
		cl->refresh_due = true;
		for (size_t i = 0; i < nops; i++) {
			if (!st[i].moved)
				continue;
			st[i].moved = false;
			if (!n) /* no table to patch: go where we were told */
				st[i].ask_node = st[i].moved_node;
		}
	}
	return backoff;
}

/* An operation still redirected or backing off when exec gives up. */
static void fail_unfinished(const struct shmc__rcluster *cl, struct shmc__rop *op,
			    struct op_state *st)
{
	switch (op->rc) {
	case SHMC__ROP_TRYAGAIN:
		op_fail(op, st, "cluster: slot %u still migrating (TRYAGAIN) after %u ms",
			(unsigned)st->slot, (unsigned)cl->cfg.command_timeout_ms);
		break;
	case SHMC__ROP_CLUSTERDOWN:
		op_fail(op, st, "cluster: CLUSTERDOWN for slot %u after %u ms", (unsigned)st->slot,
			(unsigned)cl->cfg.command_timeout_ms);
		break;
	case SHMC__ROP_MOVED:
	case SHMC__ROP_ASK:
		op_fail(op, st, "cluster: slot %u still redirected after %d rounds",
			(unsigned)st->slot, ROUNDS_MAX);
		break;
	default: /* a replica read that failed and found no round left for the master */
		op->rc = SHMC_EUPLINK;
		st->done = true;
		if (!op->err[0])
			snprintf(op->err, sizeof op->err,
				 "cluster: slot %u not answered after %d rounds",
				 (unsigned)st->slot, ROUNDS_MAX);
		break;
	}
}

void shmc__rcluster_exec(struct shmc__rcluster *cl, struct shmc__rop *ops, size_t nops)
{
	if (!nops)
		return;
	for (size_t i = 0; i < nops; i++) {
		ops[i].rc = SHMC_EUPLINK;
		ops[i].val_out = NULL;
		ops[i].vlen_out = 0;
		ops[i].pttl_ms = -1;
		ops[i].err[0] = '\0';
	}
	size_t bytes = nops * (sizeof(struct op_state) + sizeof(struct shmc__rop) +
			       sizeof(uint32_t) + sizeof(bool));
	struct shmc__rop *batch = shmc__zalloc(bytes);
	if (!batch) {
		for (size_t i = 0; i < nops; i++)
			snprintf(ops[i].err, sizeof ops[i].err, "cluster: out of memory");
		return;
	}
	/* One allocation, in decreasing order of alignment. */
	uint32_t *members = (uint32_t *)(batch + nops);
	struct op_state *st = (struct op_state *)(members + nops);
	bool *grouped = (bool *)(st + nops);
	_Static_assert(_Alignof(struct shmc__rop) >= _Alignof(uint32_t) &&
			       _Alignof(uint32_t) >= _Alignof(struct op_state) &&
			       _Alignof(struct op_state) >= _Alignof(bool),
		       "exec's scratch layout");

	for (size_t i = 0; i < nops; i++) {
		st[i].slot = shmc__cluster_slot(ops[i].key, ops[i].klen);
		st[i].ask_node = NO_NODE;
	}
	if (!cl->table)
		refresh_if_due(cl, true);

	/* Back-off sleeps add up to at most the command timeout; once it is
	 * spent, operations that ask for more fail while redirected ones go
	 * on. */
	uint32_t backoff_left_ms = cl->cfg.command_timeout_ms, backoff_ms = BACKOFF_FIRST_MS;
	for (int round = 0; round < ROUNDS_MAX; round++) {
		if (!route(cl, ops, st, nops))
			break;
		if (!dispatch(cl, ops, st, nops, batch, members, grouped) ||
		    round + 1 == ROUNDS_MAX)
			continue;
		if (backoff_left_ms) {
			uint32_t ms = backoff_ms < backoff_left_ms ? backoff_ms : backoff_left_ms;
			sleep_ms(ms);
			backoff_left_ms -= ms;
			backoff_ms *= 2;
		} else {
			for (size_t i = 0; i < nops; i++)
				if (!st[i].done && (ops[i].rc == SHMC__ROP_TRYAGAIN ||
						    ops[i].rc == SHMC__ROP_CLUSTERDOWN))
					fail_unfinished(cl, &ops[i], &st[i]);
		}
	}
	for (size_t i = 0; i < nops; i++)
		if (!st[i].done)
			fail_unfinished(cl, &ops[i], &st[i]);
	shmc__free(batch);
}

void shmc__rcluster_tick(struct shmc__rcluster *cl)
{
	refresh_if_due(cl, false);

	/* Health checks for the nodes of the current map (seeds until there
	 * is one): nodes that left the cluster are not probed forever. */
	const struct route_table *t = cl->table; /* uplink thread: the only writer */
	uint32_t n = cl->nnodes;
	for (uint32_t i = 0; i < n; i++)
		if (t ? table_uses(t, i) : i < cl->cfg.nseeds)
			shmc__rnode_health(cl->nodes[i]);
}

void shmc__rcluster_stats(const struct shmc__rcluster *cl, struct shmc__rcluster_stats *out)
{
	memset(out, 0, sizeof *out);
	out->redirects_moved = uatomic_read(&cl->moved);
	out->redirects_ask = uatomic_read(&cl->ask);
	out->retries_tryagain = uatomic_read(&cl->tryagain);
	out->retries_clusterdown = uatomic_read(&cl->clusterdown);
	out->topology_refreshes = uatomic_read(&cl->refreshes);
	out->nodes = nodes_count(cl);
}

void shmc__rcluster_each_node(struct shmc__rcluster *cl,
			      void (*fn)(void *arg, struct shmc__rnode *n), void *arg)
{
	uint32_t n = nodes_count(cl);

	for (uint32_t i = 0; i < n; i++)
		fn(arg, cl->nodes[i]);
}
