/* fake_redis.c - see fake_redis.h. */
#include "fake_redis.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

static int fake_bind(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 16) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void conn_close(struct fake_conn *c, bool reset)
{
	if (c->fd < 0)
		return;
	if (reset) {
		struct linger lg = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(c->fd);
	c->fd = -1;
	c->len = 0;
	c->received = 0;
}

/* Append one command to the log, escaped. Called with mu held. */
static void fake_log_command(struct fake *f, int argc, const char **argv, const size_t *argvlen)
{
	for (int i = 0; i < argc; i++) {
		for (size_t j = 0; j < argvlen[i] && j < 64; j++) {
			unsigned char ch = (unsigned char)argv[i][j];
			if (f->loglen + 8 >= FAKE_LOG_CAP)
				return;
			f->loglen +=
				(size_t)snprintf(f->log + f->loglen, FAKE_LOG_CAP - f->loglen,
						 ch >= 0x20 && ch < 0x7f ? "%c" : "\\x%02x", ch);
		}
		if (f->loglen + 2 < FAKE_LOG_CAP)
			f->log[f->loglen++] = i + 1 < argc ? ' ' : '\n';
	}
	f->log[f->loglen] = '\0';
}

/* One RESP command (an array of bulk strings) at the start of buf: the
 * bytes it takes, 0 if incomplete, -1 if malformed. */
static long parse_command(const char *buf, size_t len, int *argc, const char **argv,
			  size_t *argvlen)
{
	const char *p = buf, *end = buf + len;
	char *e;

	if (len < 4)
		return 0;
	if (*p != '*')
		return -1;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		return 0;
	long n = strtol(p + 1, &e, 10);
	if (n < 1 || n > 64)
		return -1;
	p = nl + 1;
	*argc = 0;
	for (long i = 0; i < n; i++) {
		if (p >= end)
			return 0;
		if (*p != '$')
			return -1;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return 0;
		long l = strtol(p + 1, &e, 10);
		if (l < 0)
			return -1;
		p = nl + 1;
		if ((size_t)(end - p) < (size_t)l + 2)
			return 0;
		if (*argc < FAKE_MAX_ARGS) {
			argv[*argc] = p;
			argvlen[*argc] = (size_t)l;
			(*argc)++;
		}
		p += l + 2;
	}
	return p - buf;
}

bool fake_arg_is(const char *a, size_t alen, const char *word)
{
	return alen == strlen(word) && strncasecmp(a, word, alen) == 0;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* Answer every complete command in c's buffer. */
static void fake_serve(struct fake *f, struct fake_conn *c)
{
	size_t off = 0;

	while (c->fd >= 0) {
		int argc = 0;
		const char *argv[FAKE_MAX_ARGS];
		size_t argvlen[FAKE_MAX_ARGS];
		long used = parse_command(c->buf + off, c->len - off, &argc, argv, argvlen);
		if (used == 0)
			break;
		if (used < 0) {
			conn_close(c, false);
			return;
		}
		off += (size_t)used;
		const char *reply = NULL;
		pthread_mutex_lock(&f->mu);
		f->commands++;
		fake_log_command(f, argc, argv, argvlen);
		if (f->answer)
			reply = f->answer(f->answer_arg, argc, argv, argvlen);
		if (reply)
			;
		else if (f->auto_answer &&
		    (fake_arg_is(argv[0], argvlen[0], "AUTH") || fake_arg_is(argv[0], argvlen[0], "SELECT") ||
		     fake_arg_is(argv[0], argvlen[0], "READONLY") ||
		     fake_arg_is(argv[0], argvlen[0], "ASKING")))
			reply = "+OK\r\n";
		else if (f->auto_answer && fake_arg_is(argv[0], argvlen[0], "PING"))
			reply = "+PONG\r\n";
		else if (f->next < f->nscript)
			reply = f->script[f->next++];
		else
			reply = f->otherwise;
		pthread_mutex_unlock(&f->mu);
		if (!reply || strcmp(reply, STALL) == 0)
			continue;
		if (strcmp(reply, CLOSE) == 0) {
			conn_close(c, false);
			return;
		}
		if (strncmp(reply, CLOSE_AFTER, strlen(CLOSE_AFTER)) == 0) {
			send_all(c->fd, reply + strlen(CLOSE_AFTER),
				 strlen(reply + strlen(CLOSE_AFTER)));
			conn_close(c, false);
			return;
		}
		if (strncmp(reply, DRIBBLE, strlen(DRIBBLE)) == 0) {
			/* (holds up the whole fake server: fine for one client) */
			for (const char *b = reply + strlen(DRIBBLE); *b; b++) {
				if (send(c->fd, b, 1, MSG_NOSIGNAL) != 1)
					break;
				tu_sleep_ms(30);
			}
			continue;
		}
		send_all(c->fd, reply, strlen(reply));
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void fake_read(struct fake *f, struct fake_conn *c)
{
	char chunk[65536];
	ssize_t r = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);

	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		conn_close(c, false);
		return;
	}
	if (r < 0)
		return;
	c->received += (size_t)r;
	pthread_mutex_lock(&f->mu);
	size_t limit = f->close_after_bytes;
	pthread_mutex_unlock(&f->mu);
	if (limit && c->received >= limit) {
		/* FIN, then RST: the client's connection goes to CLOSE_WAIT and
		 * then dies, which makes its next write fail with EPIPE and
		 * raise SIGPIPE (an RST alone gives ECONNRESET, no signal) */
		shutdown(c->fd, SHUT_WR);
		tu_sleep_ms(20);
		conn_close(c, true);
		return;
	}
	if (c->len + (size_t)r > c->cap) {
		size_t cap = (c->len + (size_t)r) * 2;
		char *b = realloc(c->buf, cap);
		if (!b) {
			conn_close(c, false);
			return;
		}
		c->buf = b;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, chunk, (size_t)r);
	c->len += (size_t)r;
	fake_serve(f, c);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		struct pollfd p[FAKE_MAX_CONNS + 2];
		int idx[FAKE_MAX_CONNS + 2];
		nfds_t np = 0;

		pthread_mutex_lock(&f->mu);
		bool stop = f->stop, want = f->want_listening, close_all = f->want_close_all;
		f->want_close_all = false;
		pthread_mutex_unlock(&f->mu);
		if (stop)
			break;
		if (close_all)
			for (int i = 0; i < FAKE_MAX_CONNS; i++)
				conn_close(&f->conns[i], false);
		if (want && f->listen_fd < 0)
			f->listen_fd = fake_bind(f->port);
		if (!want && f->listen_fd >= 0) {
			close(f->listen_fd);
			f->listen_fd = -1;
		}
		pthread_mutex_lock(&f->mu);
		f->listening = f->listen_fd >= 0;
		pthread_mutex_unlock(&f->mu);

		p[np] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
		idx[np++] = -2;
		if (f->listen_fd >= 0) {
			p[np] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
			idx[np++] = -1;
		}
		for (int i = 0; i < FAKE_MAX_CONNS; i++)
			if (f->conns[i].fd >= 0) {
				p[np] = (struct pollfd){.fd = f->conns[i].fd, .events = POLLIN};
				idx[np++] = i;
			}
		if (poll(p, np, 20) <= 0)
			continue;
		for (nfds_t k = 0; k < np; k++) {
			if (!p[k].revents)
				continue;
			if (idx[k] == -2) {
				char drain[64];
				while (read(f->wake[0], drain, sizeof drain) > 0)
					;
			} else if (idx[k] == -1) {
				int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				int slot = -1;
				for (int i = 0; i < FAKE_MAX_CONNS && slot < 0; i++)
					if (f->conns[i].fd < 0)
						slot = i;
				if (slot < 0) {
					close(fd);
					continue;
				}
				f->conns[slot].fd = fd;
				pthread_mutex_lock(&f->mu);
				f->accepts++;
				pthread_mutex_unlock(&f->mu);
			} else if (f->conns[idx[k]].fd >= 0) {
				fake_read(f, &f->conns[idx[k]]);
			}
		}
	}
	for (int i = 0; i < FAKE_MAX_CONNS; i++) {
		conn_close(&f->conns[i], false);
		free(f->conns[i].buf);
	}
	if (f->listen_fd >= 0)
		close(f->listen_fd);
	return NULL;
}

void fake_poke(struct fake *f)
{
	char b = 1;

	if (write(f->wake[1], &b, 1) < 0) {
		/* full pipe: the thread is awake anyway */
	}
}

struct fake *fake_start(void)
{
	struct fake *f = calloc(1, sizeof *f);
	struct sockaddr_in a;
	socklen_t alen = sizeof a;

	assert_non_null(f);
	pthread_mutex_init(&f->mu, NULL);
	assert_int_equal(pipe2(f->wake, O_CLOEXEC | O_NONBLOCK), 0);
	for (int i = 0; i < FAKE_MAX_CONNS; i++)
		f->conns[i].fd = -1;
	f->listen_fd = fake_bind(0);
	assert_true(f->listen_fd >= 0);
	assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&a, &alen), 0);
	f->port = ntohs(a.sin_port);
	f->want_listening = f->listening = true;
	f->auto_answer = true;
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

void fake_stop(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_mutex_unlock(&f->mu);
	fake_poke(f);
	pthread_join(f->thread, NULL);
	close(f->wake[0]);
	close(f->wake[1]);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

/* Open or close the listener (on the same port), and wait until done. */
void fake_set_listening(struct fake *f, bool on)
{
	uint64_t until = tu_now_ms() + 5000;

	pthread_mutex_lock(&f->mu);
	f->want_listening = on;
	pthread_mutex_unlock(&f->mu);
	for (;;) {
		fake_poke(f);
		pthread_mutex_lock(&f->mu);
		bool done = f->listening == on;
		pthread_mutex_unlock(&f->mu);
		if (done)
			return;
		if (tu_now_ms() > until)
			fail_msg("the fake server did not %s its listener", on ? "open" : "close");
		tu_sleep_ms(1);
	}
}

/* Replace the script with the NULL-terminated replies given. */
void fake_script(struct fake *f, ...)
{
	va_list ap;

	pthread_mutex_lock(&f->mu);
	f->nscript = f->next = 0;
	va_start(ap, f);
	for (const char *r; (r = va_arg(ap, const char *));) {
		assert_true(f->nscript < FAKE_MAX_SCRIPT);
		f->script[f->nscript++] = r;
	}
	va_end(ap);
	pthread_mutex_unlock(&f->mu);
}

void fake_otherwise(struct fake *f, const char *reply)
{
	pthread_mutex_lock(&f->mu);
	f->otherwise = reply;
	pthread_mutex_unlock(&f->mu);
}

void fake_set_answer(struct fake *f, fake_answer_fn fn, void *arg)
{
	pthread_mutex_lock(&f->mu);
	f->answer = fn;
	f->answer_arg = arg;
	pthread_mutex_unlock(&f->mu);
}

void fake_auto_answer(struct fake *f, bool on)
{
	pthread_mutex_lock(&f->mu);
	f->auto_answer = on;
	pthread_mutex_unlock(&f->mu);
}

unsigned fake_accepts(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	unsigned n = f->accepts;
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* A copy of the command log (the caller frees it). */
char *fake_log(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	char *s = strdup(f->log);
	pthread_mutex_unlock(&f->mu);
	assert_non_null(s);
	return s;
}

void fake_clear_log(struct fake *f)
{
	pthread_mutex_lock(&f->mu);
	f->log[0] = '\0';
	f->loglen = 0;
	pthread_mutex_unlock(&f->mu);
}

void assert_log_has(struct fake *f, const char *line)
{
	char *log = fake_log(f);

	if (!strstr(log, line))
		fail_msg("the server did not see \"%s\"; it saw:\n%s", line, log);
	free(log);
}

void assert_log_lacks(struct fake *f, const char *line)
{
	char *log = fake_log(f);

	if (strstr(log, line))
		fail_msg("the server saw \"%s\":\n%s", line, log);
	free(log);
}
