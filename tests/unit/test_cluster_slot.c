/*
 * test_cluster_slot.c - Redis Cluster key slots (CRC16-XMODEM with hash
 * tags) and the CLUSTER SLOTS reply parser of redis_cluster.c, fed with
 * hand-built hiredis replies: valid maps, and every kind of garbage a
 * server (or something posing as one) could send, each refused with a
 * message that says what is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include <shmcache.h>

#include "redis_cluster.h"

/* ------------------------------------------------------------- slots */

static uint16_t slot_of(const char *key)
{
	return shmc__cluster_slot(key, strlen(key));
}

static void test_cluster_slot_crc16_check_value_matches(void **state)
{
	(void)state;
	/* The CRC16-XMODEM check value; below 16384, so it is the slot. */
	assert_int_equal(slot_of("123456789"), 0x31C3);
}

/* CRC16-XMODEM bit by bit: a reference independent of the library's
 * table-driven one. */
static uint16_t crc16_ref(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)(b[i] << 8);
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
					     : (uint16_t)(crc << 1);
	}
	return crc;
}

static uint16_t whole_key_slot(const char *key)
{
	return crc16_ref(key, strlen(key)) % SHMC__CLUSTER_SLOTS;
}

static void test_cluster_slot_known_keys_match_redis(void **state)
{
	(void)state;
	/* CLUSTER KEYSLOT of a real server (redis 7.0); the uplink test also
	 * compares many keys against a live cluster. */
	assert_int_equal(slot_of("somekey"), 11058);
	assert_int_equal(slot_of("foo{hash_tag}"), 2515);
	assert_int_equal(slot_of("foo"), 12182);
	assert_int_equal(slot_of(""), 0);
	assert_int_equal(slot_of("foo{}{bar}"), 8363);
	assert_int_equal(slot_of("foo{{bar}}zap"), 4015);
	assert_int_equal(slot_of("{"), 4092);
	assert_int_equal(slot_of("}{"), 12793);
	assert_int_equal(slot_of("{}"), 15257);
}

static void test_cluster_slot_table_matches_bitwise_crc(void **state)
{
	(void)state;
	unsigned char key[64];
	uint64_t x = 0x9E3779B97F4A7C15u;

	for (int n = 0; n < 2000; n++) {
		size_t len = (size_t)(n % (int)sizeof key);
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			key[i] = (unsigned char)(x & 0xff);
			if (key[i] == '{')
				key[i] = 'a'; /* no tags here */
		}
		assert_int_equal(shmc__cluster_slot(key, len),
				 crc16_ref(key, len) % SHMC__CLUSTER_SLOTS);
	}
}

static void test_cluster_slot_hash_tag_shared_slot(void **state)
{
	(void)state;
	uint16_t a = slot_of("{user1000}.following");
	uint16_t b = slot_of("{user1000}.followers");

	assert_int_equal(a, b);
	assert_int_equal(a, slot_of("user1000"));
	assert_int_not_equal(a, whole_key_slot("{user1000}.following"));
	assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
	assert_int_equal(slot_of("x{a}"), slot_of("y{a}z"));
}

static void test_cluster_slot_empty_tag_hashes_whole_key(void **state)
{
	(void)state;
	/* The first '{' is followed at once by '}': no tag, the whole key. */
	assert_int_equal(slot_of("foo{}{bar}"), whole_key_slot("foo{}{bar}"));
	assert_int_not_equal(slot_of("foo{}{bar}"), slot_of("bar"));
	assert_int_equal(slot_of("{}"), whole_key_slot("{}"));
}

static void test_cluster_slot_first_brace_pair_is_the_tag(void **state)
{
	(void)state;
	/* The tag runs from the first '{' to the first '}' after it. */
	assert_int_equal(slot_of("foo{{bar}}zap"), whole_key_slot("{bar"));
	assert_int_not_equal(slot_of("foo{{bar}}zap"), slot_of("bar"));
}

static void test_cluster_slot_unclosed_brace_hashes_whole_key(void **state)
{
	(void)state;
	/* No '}' after the first '{': the whole key, byte for byte. */
	const char *keys[] = {"{", "abc{def", "}{", "}abc{", "a}b{c"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		assert_int_equal(slot_of(keys[i]), whole_key_slot(keys[i]));
}

static void test_cluster_slot_binary_key_uses_every_byte(void **state)
{
	(void)state;
	const char a[] = {'k', '\0', 'x'}, b[] = {'k', '\0', 'y'};
	const char tagged[] = {'{', '\0', '}', 'q'};

	assert_int_not_equal(shmc__cluster_slot(a, sizeof a), shmc__cluster_slot(b, sizeof b));
	assert_int_equal(shmc__cluster_slot(tagged, sizeof tagged), shmc__cluster_slot("\0", 1));
	assert_int_equal(shmc__cluster_slot(NULL, 0), 0);
}

/* ------------------------------------------------ hand-built replies */

/* Every reply built here is released with reply_free; element arrays may
 * hold NULL (a missing element), which the parser must refuse. */
static redisReply *reply_new(int type)
{
	redisReply *r = calloc(1, sizeof *r);

	assert_non_null(r);
	r->type = type;
	return r;
}

static redisReply *mk_int(long long v)
{
	redisReply *r = reply_new(REDIS_REPLY_INTEGER);

	r->integer = v;
	return r;
}

static redisReply *mk_str_type(int type, const char *s)
{
	redisReply *r = reply_new(type);

	r->len = strlen(s);
	r->str = strdup(s);
	assert_non_null(r->str);
	return r;
}

static redisReply *mk_str(const char *s)
{
	return mk_str_type(REDIS_REPLY_STRING, s);
}

/* An array of n elements given as arguments. */
static redisReply *mk_arr(size_t n, ...)
{
	redisReply *r = reply_new(REDIS_REPLY_ARRAY);
	va_list ap;

	r->elements = n;
	r->element = calloc(n ? n : 1, sizeof *r->element);
	assert_non_null(r->element);
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static void reply_free(redisReply *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
		reply_free(r->element[i]);
	free(r->element);
	free(r->str);
	free(r);
}

/* [host, port, id] */
static redisReply *mk_node(const char *host, long long port, const char *id)
{
	return mk_arr(3, mk_str(host), mk_int(port), mk_str(id));
}

/* The reply of a healthy 3-master, 3-replica cluster. */
static redisReply *mk_six_node_map(void)
{
	return mk_arr(3,
		      mk_arr(4, mk_int(0), mk_int(5460), mk_node("127.0.0.1", 7000, "a"),
			     mk_node("127.0.0.1", 7003, "d")),
		      mk_arr(4, mk_int(5461), mk_int(10922), mk_node("127.0.0.1", 7001, "b"),
			     mk_node("127.0.0.1", 7004, "e")),
		      mk_arr(4, mk_int(10923), mk_int(16383), mk_node("127.0.0.1", 7002, "c"),
			     mk_node("127.0.0.1", 7005, "f")));
}

static const struct shmc__endpoint *node_of(const struct shmc__cluster_map *m, uint16_t i)
{
	assert_true(i < m->nnodes);
	return &m->nodes[i];
}

static void assert_endpoint(const struct shmc__endpoint *ep, const char *host, uint16_t port)
{
	assert_string_equal(ep->host, host);
	assert_int_equal(ep->port, port);
}

/* Parse r, expect a refusal whose message contains what; free r. */
static void expect_refused(redisReply *r, const char *what)
{
	struct shmc__cluster_map m;
	char err[160] = "untouched";

	int rc = shmc__cluster_map_parse(r, "10.0.0.1", &m, err, sizeof err);
	if (rc != SHMC_EUPLINK || !strstr(err, what))
		print_error("expected SHMC_EUPLINK with \"%s\", got %d \"%s\"\n", what, rc, err);
	assert_int_equal(rc, SHMC_EUPLINK);
	assert_non_null(strstr(err, what));
	assert_null(m.ranges);
	assert_null(m.nodes);
	assert_int_equal(m.nranges, 0);
	assert_int_equal(m.nnodes, 0);
	shmc__cluster_map_free(&m); /* harmless on an empty map */
	reply_free(r);
}

/* ------------------------------------------------ valid maps */

static void test_cluster_slot_map_six_nodes_parsed(void **state)
{
	(void)state;
	redisReply *r = mk_six_node_map();
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "127.0.0.1", &m, err, sizeof err), 0);
	assert_int_equal(m.nranges, 3);
	assert_int_equal(m.nnodes, 6);
	static const uint16_t first[] = {0, 5461, 10923}, last[] = {5460, 10922, 16383};
	for (unsigned i = 0; i < 3; i++) {
		const struct shmc__cluster_range *rg = &m.ranges[i];
		assert_int_equal(rg->first, first[i]);
		assert_int_equal(rg->last, last[i]);
		assert_endpoint(node_of(&m, rg->master), "127.0.0.1", (uint16_t)(7000 + i));
		assert_int_equal(rg->nreplicas, 1);
		assert_endpoint(node_of(&m, rg->replica[0]), "127.0.0.1", (uint16_t)(7003 + i));
	}
	shmc__cluster_map_free(&m);
	assert_null(m.ranges);
	reply_free(r);
}

static void test_cluster_slot_map_same_master_one_node(void **state)
{
	(void)state;
	/* Two ranges of one master (after a resharding): one node entry. */
	redisReply *r = mk_arr(2, mk_arr(3, mk_int(0), mk_int(99), mk_node("h1", 7000, "a")),
			       mk_arr(4, mk_int(200), mk_int(299), mk_node("h1", 7000, "a"),
				      mk_node("h2", 7000, "b")));
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), 0);
	assert_int_equal(m.nranges, 2);
	assert_int_equal(m.nnodes, 2);
	assert_int_equal(m.ranges[0].master, m.ranges[1].master);
	assert_int_equal(m.ranges[0].nreplicas, 0);
	assert_endpoint(node_of(&m, m.ranges[1].replica[0]), "h2", 7000);
	shmc__cluster_map_free(&m);
	reply_free(r);
}

static void test_cluster_slot_map_ipv6_and_metadata_accepted(void **state)
{
	(void)state;
	/* Redis 7 adds a fourth element (networking metadata) per node; a
	 * 3.x server sends no id. Both are fine. */
	redisReply *r = mk_arr(1, mk_arr(4, mk_int(0), mk_int(16383),
					 mk_arr(4, mk_str("::1"), mk_int(6379), mk_str("id1"),
						mk_arr(2, mk_str("hostname"), mk_str("redis-a"))),
					 mk_arr(2, mk_str("fe80::2"), mk_int(6380))));
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), 0);
	assert_int_equal(m.nranges, 1);
	assert_endpoint(node_of(&m, m.ranges[0].master), "::1", 6379);
	assert_int_equal(m.ranges[0].nreplicas, 1);
	assert_endpoint(node_of(&m, m.ranges[0].replica[0]), "fe80::2", 6380);
	shmc__cluster_map_free(&m);
	reply_free(r);
}

static void test_cluster_slot_map_empty_host_is_asked_node(void **state)
{
	(void)state;
	redisReply *r = mk_arr(1, mk_arr(3, mk_int(0), mk_int(16383), mk_node("", 7000, "a")));
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "10.1.2.3", &m, err, sizeof err), 0);
	assert_endpoint(node_of(&m, m.ranges[0].master), "10.1.2.3", 7000);
	shmc__cluster_map_free(&m);

	/* ... and without an asked host it cannot be resolved. */
	assert_int_equal(shmc__cluster_map_parse(r, NULL, &m, err, sizeof err), SHMC_EUPLINK);
	assert_non_null(strstr(err, "empty host"));
	reply_free(r);
}

static void test_cluster_slot_map_unknown_endpoint_left_out(void **state)
{
	(void)state;
	/* "?" (cluster-preferred-endpoint-type unknown-endpoint): a replica is
	 * dropped, a master leaves its slots unserved. */
	redisReply *r = mk_arr(
		2,
		mk_arr(4, mk_int(0), mk_int(10), mk_node("h1", 7000, "a"), mk_node("?", 7003, "d")),
		mk_arr(3, mk_int(11), mk_int(20), mk_node("?", 7001, "b")));
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), 0);
	assert_int_equal(m.nnodes, 1);
	assert_int_equal(m.ranges[0].nreplicas, 0);
	assert_int_equal(m.ranges[1].master, SHMC__CLUSTER_NO_NODE);
	shmc__cluster_map_free(&m);
	reply_free(r);
}

static void test_cluster_slot_map_replicas_capped(void **state)
{
	(void)state;
	redisReply *e = mk_arr(3 + SHMC__CLUSTER_MAX_REPLICAS + 2, mk_int(0), mk_int(16383),
			       mk_node("m", 1, "m"), NULL, NULL, NULL, NULL, NULL, NULL);
	for (unsigned k = 0; k < SHMC__CLUSTER_MAX_REPLICAS + 2; k++) {
		char host[16];
		snprintf(host, sizeof host, "r%u", k);
		e->element[3 + k] = mk_node(host, 2, host);
	}
	redisReply *r = mk_arr(1, e);
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), 0);
	assert_int_equal(m.ranges[0].nreplicas, SHMC__CLUSTER_MAX_REPLICAS);
	assert_endpoint(node_of(&m, m.ranges[0].replica[0]), "r0", 2);
	shmc__cluster_map_free(&m);
	reply_free(r);
}

static void test_cluster_slot_map_every_slot_single_entries(void **state)
{
	(void)state;
	/* The worst fragmentation: 16384 one-slot entries over 3 masters. */
	redisReply *r = reply_new(REDIS_REPLY_ARRAY);
	r->elements = SHMC__CLUSTER_SLOTS;
	r->element = calloc(SHMC__CLUSTER_SLOTS, sizeof *r->element);
	assert_non_null(r->element);
	for (int s = 0; s < SHMC__CLUSTER_SLOTS; s++)
		r->element[s] = mk_arr(3, mk_int(s), mk_int(s), mk_node("h", 7000 + s % 3, "i"));
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), 0);
	assert_int_equal(m.nranges, SHMC__CLUSTER_SLOTS);
	assert_int_equal(m.nnodes, 3);
	shmc__cluster_map_free(&m);
	reply_free(r);
}

/* ------------------------------------------------ garbage refused */

static void test_cluster_slot_map_not_an_array_refused(void **state)
{
	(void)state;
	struct shmc__cluster_map m;
	char err[160];

	assert_int_equal(shmc__cluster_map_parse(NULL, "x", &m, err, sizeof err), SHMC_EUPLINK);
	assert_non_null(strstr(err, "no reply"));
	expect_refused(mk_str("hello"), "reply is a string, not an array");
	expect_refused(mk_int(3), "reply is an integer, not an array");
	expect_refused(reply_new(REDIS_REPLY_NIL), "reply is nil, not an array");
	expect_refused(mk_str_type(REDIS_REPLY_STATUS, "OK"), "reply is a status");
	expect_refused(
		mk_str_type(REDIS_REPLY_ERROR, "ERR This instance has cluster support disabled"),
		"error reply: ERR This instance has cluster support disabled");
	expect_refused(mk_arr(0), "no slot is assigned");
}

static void test_cluster_slot_map_missing_fields_refused(void **state)
{
	(void)state;
	expect_refused(mk_arr(1, mk_arr(2, mk_int(0), mk_int(10))),
		       "entry 0 has 2 elements, needs first slot, last slot and master");
	expect_refused(mk_arr(1, NULL), "entry 0 is missing");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), NULL, mk_node("h", 1, "i"))),
		       "entry 0: last slot is missing");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_arr(1, mk_str("h")))),
		       "entry 0: node 0 has 1 elements, needs host and port");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), NULL)),
		       "entry 0: node 0 is missing");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_arr(2, NULL, mk_int(1)))),
		       "entry 0: node 0: host is missing");
	/* A bad entry after good ones: nothing of the good ones leaks out. */
	expect_refused(mk_arr(2, mk_arr(3, mk_int(0), mk_int(10), mk_node("h", 1, "i")),
			      mk_arr(3, mk_int(11), mk_int(20), mk_arr(2, mk_str("h2"), NULL))),
		       "entry 1: node 0: port is missing");
}

static void test_cluster_slot_map_wrong_types_refused(void **state)
{
	(void)state;
	expect_refused(mk_arr(1, mk_int(7)), "entry 0 is an integer, not an array");
	expect_refused(mk_arr(1, mk_arr(3, mk_str("0"), mk_int(10), mk_node("h", 1, "i"))),
		       "entry 0: first slot is a string, not an integer");
	expect_refused(
		mk_arr(1, mk_arr(3, mk_int(0), reply_new(REDIS_REPLY_NIL), mk_node("h", 1, "i"))),
		"entry 0: last slot is nil, not an integer");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_str("h:1"))),
		       "entry 0: node 0 is a string, not an array");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10),
					mk_arr(3, mk_int(127), mk_int(1), mk_str("i")))),
		       "entry 0: node 0: host is an integer, not a string");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10),
					mk_arr(3, mk_str("h"), mk_str("7000"), mk_str("i")))),
		       "entry 0: node 0: port is a string, not an integer");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10),
					mk_arr(3, mk_str("h"), mk_int(7000), mk_int(5)))),
		       "entry 0: node 0: id is an integer, not a string");
	expect_refused(mk_arr(1, mk_arr(4, mk_int(0), mk_int(10), mk_node("h", 1, "i"),
					mk_str_type(REDIS_REPLY_ERROR, "ERR"))),
		       "entry 0: node 1 is an error, not an array");
	expect_refused(
		mk_arr(1, mk_arr(3, mk_int(0), mk_int(10),
				 mk_arr(2, mk_str_type(REDIS_REPLY_STATUS, "h"), mk_int(1)))),
		"entry 0: node 0: host is a status, not a string");
}

static void test_cluster_slot_map_out_of_range_refused(void **state)
{
	(void)state;
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(16384), mk_node("h", 1, "i"))),
		       "entry 0: last slot 16384 is not in 0..16383");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(-1), mk_int(5), mk_node("h", 1, "i"))),
		       "entry 0: first slot -1 is not in 0..16383");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(1LL << 40), mk_int(5), mk_node("h", 1, "i"))),
		       "is not in 0..16383");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(10), mk_int(5), mk_node("h", 1, "i"))),
		       "entry 0: first slot 10 is after last slot 5");
	expect_refused(mk_arr(2, mk_arr(3, mk_int(0), mk_int(10), mk_node("h", 1, "i")),
			      mk_arr(3, mk_int(10), mk_int(20), mk_node("h2", 1, "j"))),
		       "entry 1: slot 10 is assigned twice");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_node("h", 0, "i"))),
		       "entry 0: node 0: port 0 is not in 1..65535");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_node("h", 65536, "i"))),
		       "port 65536 is not in 1..65535");
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_node("h", -6379, "i"))),
		       "port -6379 is not in 1..65535");
}

static void test_cluster_slot_map_bad_hosts_refused(void **state)
{
	(void)state;
	char longhost[SHMC__HOST_MAX + 1];

	memset(longhost, 'a', sizeof longhost - 1);
	longhost[sizeof longhost - 1] = '\0';
	expect_refused(mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_node(longhost, 1, "i"))),
		       "host of 256 bytes is not a host name");

	redisReply *nul = mk_str("ab");
	nul->str[1] = '\0'; /* "a\0" with len 2 */
	expect_refused(
		mk_arr(1, mk_arr(3, mk_int(0), mk_int(10), mk_arr(3, nul, mk_int(1), mk_str("i")))),
		"host of 2 bytes is not a host name");
}

static void test_cluster_slot_map_small_err_buffer_safe(void **state)
{
	(void)state;
	redisReply *r = mk_arr(1, mk_int(7));
	struct shmc__cluster_map m;
	char err[8];

	memset(err, 'x', sizeof err);
	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, err, sizeof err), SHMC_EUPLINK);
	assert_int_equal(strlen(err), sizeof err - 1);
	assert_int_equal(shmc__cluster_map_parse(r, "x", &m, NULL, 0), SHMC_EUPLINK);
	reply_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cluster_slot_crc16_check_value_matches),
		cmocka_unit_test(test_cluster_slot_known_keys_match_redis),
		cmocka_unit_test(test_cluster_slot_table_matches_bitwise_crc),
		cmocka_unit_test(test_cluster_slot_hash_tag_shared_slot),
		cmocka_unit_test(test_cluster_slot_empty_tag_hashes_whole_key),
		cmocka_unit_test(test_cluster_slot_first_brace_pair_is_the_tag),
		cmocka_unit_test(test_cluster_slot_unclosed_brace_hashes_whole_key),
		cmocka_unit_test(test_cluster_slot_binary_key_uses_every_byte),
		cmocka_unit_test(test_cluster_slot_map_six_nodes_parsed),
		cmocka_unit_test(test_cluster_slot_map_same_master_one_node),
		cmocka_unit_test(test_cluster_slot_map_ipv6_and_metadata_accepted),
		cmocka_unit_test(test_cluster_slot_map_empty_host_is_asked_node),
		cmocka_unit_test(test_cluster_slot_map_unknown_endpoint_left_out),
		cmocka_unit_test(test_cluster_slot_map_replicas_capped),
		cmocka_unit_test(test_cluster_slot_map_every_slot_single_entries),
		cmocka_unit_test(test_cluster_slot_map_not_an_array_refused),
		cmocka_unit_test(test_cluster_slot_map_missing_fields_refused),
		cmocka_unit_test(test_cluster_slot_map_wrong_types_refused),
		cmocka_unit_test(test_cluster_slot_map_out_of_range_refused),
		cmocka_unit_test(test_cluster_slot_map_bad_hosts_refused),
		cmocka_unit_test(test_cluster_slot_map_small_err_buffer_safe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
