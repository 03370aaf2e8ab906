/*
 * cluster_util.c - the Redis Cluster tests' own view of the fixture's
 * cluster (see cluster_util.h): its env file, plain hiredis connections,
 * CLUSTER NODES parsed into a slot map, and waiting for health.
 */
#include "cluster_util.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>

#include "testutil.h"

/* ------------------------------------------------------- the env file */

/* A value of the env file: KEY=VALUE or KEY='VALUE'. */
bool tc_env_value(const char *line, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);

	if (strncmp(line, key, klen) != 0 || line[klen] != '=')
		return false;
	const char *v = line + klen + 1;
	size_t len = strcspn(v, "\n");
	if (len >= 2 && v[0] == '\'' && v[len - 1] == '\'') {
		v++;
		len -= 2;
	}
	assert_true(len < cap);
	memcpy(out, v, len);
	out[len] = '\0';
	return true;
}

void tc_env_load(struct tc_env *e)
{
	const char *path = getenv("SHMC_REDIS_CLUSTER_ENV");
	char line[2048], val[1024];

	memset(e, 0, sizeof *e);
	if (!path || !*path)
		fail_msg("SHMC_REDIS_CLUSTER_ENV is not set: run this test through ctest (fixture "
			 "redis_cluster), or start a cluster with tests/uplink/servers.sh "
			 "start-cluster DIR and set it to DIR/env");
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s: %s (did the fixture uplink_redis_cluster_start fail?)",
			 path, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		if (tc_env_value(line, "SHMC_REDIS_CLUSTER_URI", e->uri, sizeof e->uri) ||
		    tc_env_value(line, "SHMC_SERVERS_SH", e->servers_sh, sizeof e->servers_sh) ||
		    tc_env_value(line, "SHMC_SERVERS_DIR", e->dir, sizeof e->dir))
			continue;
		if (tc_env_value(line, "SHMC_REDIS_CLUSTER_PORTS", val, sizeof val)) {
			for (char *p = strtok(val, ","); p && e->nports < TC_NODES_MAX;
			     p = strtok(NULL, ","))
				e->port[e->nports++] = (uint16_t)atoi(p);
		}
	}
	fclose(f);
	assert_true(e->uri[0] && e->servers_sh[0] && e->dir[0]);
	assert_int_equal(e->nports, 6);
	/* pids after the ports, whatever the order of the lines */
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof line, f)) {
		for (unsigned i = 0; i < e->nports; i++) {
			char key[64];
			snprintf(key, sizeof key, "SHMC_REDIS_CLUSTER_PID_%u",
				 (unsigned)e->port[i]);
			if (tc_env_value(line, key, val, sizeof val))
				e->pid[i] = (pid_t)atol(val);
		}
	}
	fclose(f);
	for (unsigned i = 0; i < e->nports; i++)
		assert_true(e->pid[i] > 0);
}

pid_t tc_env_pid_of(const struct tc_env *e, uint16_t port)
{
	for (unsigned i = 0; i < e->nports; i++)
		if (e->port[i] == port)
			return e->pid[i];
	fail_msg("port %u is not in the env file", (unsigned)port);
	return -1;
}

void tc_restart_node(struct tc_env *e, uint16_t port)
{
	char cmd[2600];

	snprintf(cmd, sizeof cmd, "bash '%s' restart-node '%s' %u >&2", e->servers_sh, e->dir,
		 (unsigned)port);
	assert_int_equal(system(cmd), 0);
	tc_env_load(e);
}

/* ---------------------------------------------- our own connections */

redisContext *tc_connect(uint16_t port)
{
	struct timeval tv = {.tv_sec = 1};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	tv.tv_sec = 5;
	redisSetTimeout(c, tv);
	return c;
}

redisReply *tc_argv(uint16_t port, int argc, const char **argv)
{
	redisContext *c = tc_connect(port);

	if (!c)
		return NULL;
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	redisFree(c);
	return r;
}

redisReply *tc_cmd(uint16_t port, const char *fmt, ...)
{
	redisContext *c = tc_connect(port);
	va_list ap;

	if (!c)
		return NULL;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return r;
}

void tc_ok(uint16_t port, const char *fmt, ...)
{
	redisContext *c = tc_connect(port);
	va_list ap;

	assert_non_null(c);
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	if (!r || r->type == REDIS_REPLY_ERROR)
		fail_msg("port %u: '%s' failed: %s", (unsigned)port, fmt, r ? r->str : "no reply");
	freeReplyObject(r);
}

unsigned tc_keyslot(const struct tc_env *e, const char *key)
{
	redisReply *r = NULL;

	for (unsigned i = 0; i < e->nports && !r; i++) {
		r = tc_cmd(e->port[i], "CLUSTER KEYSLOT %s", key);
		if (r && r->type != REDIS_REPLY_INTEGER) {
			freeReplyObject(r);
			r = NULL;
		}
	}
	if (!r)
		fail_msg("no node answered CLUSTER KEYSLOT %s", key);
	assert_true(r->integer >= 0 && r->integer < TC_SLOTS);
	unsigned slot = (unsigned)r->integer;
	freeReplyObject(r);
	return slot;
}

long long tc_cmd_calls(uint16_t port, const char *cmd)
{
	redisReply *r = tc_cmd(port, "INFO commandstats");
	char want[64];

	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	snprintf(want, sizeof want, "cmdstat_%s:calls=", cmd);
	const char *p = strstr(r->str, want);
	long long calls = p ? atoll(p + strlen(want)) : 0;
	freeReplyObject(r);
	return calls;
}

/* ---------------------------------------------- the cluster's view */

void tc_topo_load(const struct tc_env *e, struct tc_topo *t)
{
	redisReply *r = NULL;

	memset(t, 0, sizeof *t);
	for (unsigned i = 0; i < e->nports && !r; i++) {
		r = tc_cmd(e->port[i], "CLUSTER NODES");
		if (r && r->type != REDIS_REPLY_STRING) {
			freeReplyObject(r);
			r = NULL;
		}
	}
	assert_non_null(r);
	char *save = NULL;
	for (char *line = strtok_r(r->str, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_true(t->n < TC_NODES_MAX);
		struct tc_node *nd = &t->node[t->n++];
		char *fsave = NULL, *f[64];
		unsigned nf = 0;
		for (char *w = strtok_r(line, " ", &fsave); w && nf < 64;
		     w = strtok_r(NULL, " ", &fsave))
			f[nf++] = w;
		assert_true(nf >= 8);
		snprintf(nd->id, sizeof nd->id, "%s", f[0]);
		char *colon = strrchr(strtok(f[1], "@"), ':');
		assert_non_null(colon);
		nd->port = (uint16_t)atoi(colon + 1);
		nd->master = strstr(f[2], "master") != NULL;
		nd->failed = strstr(f[2], "fail") != NULL;
		snprintf(nd->master_id, sizeof nd->master_id, "%s", f[3]);
		for (unsigned k = 8; k < nf && nd->master; k++) {
			if (f[k][0] == '[')
				continue; /* a migration in progress */
			int first = atoi(f[k]), last = first;
			char *dash = strchr(f[k], '-');
			if (dash)
				last = atoi(dash + 1);
			for (int s = first; s <= last && s < TC_SLOTS; s++)
				t->slot_port[s] = nd->port;
		}
	}
	freeReplyObject(r);
}

const struct tc_node *tc_topo_by_port(const struct tc_topo *t, uint16_t port)
{
	for (unsigned i = 0; i < t->n; i++)
		if (t->node[i].port == port)
			return &t->node[i];
	fail_msg("no node on port %u", (unsigned)port);
	return NULL;
}

unsigned tc_topo_masters(const struct tc_topo *t, uint16_t *ports)
{
	unsigned n = 0;

	for (unsigned i = 0; i < t->n; i++)
		if (t->node[i].master && !t->node[i].failed)
			ports[n++] = t->node[i].port;
	return n;
}

unsigned tc_topo_replicas(const struct tc_topo *t, uint16_t master_port, uint16_t *ports)
{
	const struct tc_node *m = tc_topo_by_port(t, master_port);
	unsigned n = 0;

	for (unsigned i = 0; i < t->n; i++)
		if (!t->node[i].master && !t->node[i].failed &&
		    !strcmp(t->node[i].master_id, m->id))
			ports[n++] = t->node[i].port;
	return n;
}

void tc_wait_cluster_ok(const struct tc_env *e, unsigned timeout_ms)
{
	uint64_t deadline = tu_now_ms() + timeout_ms;

	for (;;) {
		bool ok = true;
		for (unsigned i = 0; i < e->nports && ok; i++) {
			redisReply *r = tc_cmd(e->port[i], "CLUSTER INFO");
			ok = r && r->type == REDIS_REPLY_STRING &&
			     strstr(r->str, "cluster_state:ok") &&
			     strstr(r->str, "cluster_slots_ok:16384");
			if (r)
				freeReplyObject(r);
		}
		if (ok)
			return;
		if (tu_now_ms() > deadline)
			fail_msg("the cluster is not healthy after %u ms", timeout_ms);
		tu_sleep_ms(50);
	}
}

/* ------------------------------------------------ a slot migration */

void tc_migration_plan(const struct tc_topo *t, unsigned slot, struct tc_migration *m)
{
	memset(m, 0, sizeof *m);
	m->slot = slot;
	m->src = t->slot_port[slot];
	m->nmasters = tc_topo_masters(t, m->masters);
	for (unsigned i = 0; i < m->nmasters && !m->dst; i++)
		if (m->masters[i] != m->src)
			m->dst = m->masters[i];
	assert_true(m->src && m->dst);
	snprintf(m->src_id, sizeof m->src_id, "%s", tc_topo_by_port(t, m->src)->id);
	snprintf(m->dst_id, sizeof m->dst_id, "%s", tc_topo_by_port(t, m->dst)->id);
}

void tc_migration_begin(const struct tc_migration *m)
{
	tc_ok(m->dst, "CLUSTER SETSLOT %u IMPORTING %s", m->slot, m->src_id);
	tc_ok(m->src, "CLUSTER SETSLOT %u MIGRATING %s", m->slot, m->dst_id);
}

unsigned tc_migration_step(const struct tc_migration *m, unsigned batch)
{
	enum { MAX_BATCH = 16 };
	char port_arg[8];
	unsigned moved;

	assert_true(batch >= 1 && batch <= MAX_BATCH);
	redisReply *r = tc_cmd(m->src, "CLUSTER GETKEYSINSLOT %u %u", m->slot, batch);
	assert_non_null(r);
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	moved = (unsigned)(r->elements < batch ? r->elements : batch);
	if (moved) {
		/* MIGRATE host port "" db timeout KEYS key... */
		const char *argv[7 + MAX_BATCH] = {"MIGRATE", "127.0.0.1", port_arg, "",
						   "0",       "5000",      "KEYS"};
		snprintf(port_arg, sizeof port_arg, "%u", (unsigned)m->dst);
		for (unsigned i = 0; i < moved; i++)
			argv[7 + i] = r->element[i]->str;
		redisReply *mr = tc_argv(m->src, 7 + (int)moved, argv);
		assert_non_null(mr);
		if (mr->type == REDIS_REPLY_ERROR)
			fail_msg("MIGRATE: %s", mr->str);
		freeReplyObject(mr);
	}
	freeReplyObject(r);
	return moved;
}

void tc_migration_finish(const struct tc_migration *m)
{
	tc_ok(m->dst, "CLUSTER SETSLOT %u NODE %s", m->slot, m->dst_id);
	tc_ok(m->src, "CLUSTER SETSLOT %u NODE %s", m->slot, m->dst_id);
	for (unsigned i = 0; i < m->nmasters; i++)
		if (m->masters[i] != m->src && m->masters[i] != m->dst)
			tc_ok(m->masters[i], "CLUSTER SETSLOT %u NODE %s", m->slot, m->dst_id);
}
