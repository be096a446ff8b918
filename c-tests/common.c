/* common.c - shared helpers for the socks5d management protocol C tests.
 * See common.h; the wire format is docs/management-protocol.md. */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/sctp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int passed;
static int failed;
static const char *scenario = "?";

/* --- test bookkeeping ------------------------------------------------ */

int test_init(int argc, char **argv, const char *name)
{
	const char *s;
	char *end;
	long port;

	scenario = name;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A send on an association the server already closed must fail the
	 * step, not kill the program. */
	signal(SIGPIPE, SIG_IGN);

	s = argc > 1 ? argv[1] : getenv("SOCKS5D_MGMT_PORT");
	if (s == NULL || *s == '\0')
		fatal(0, "%s: no management port: give it as the first "
			 "argument or in SOCKS5D_MGMT_PORT", name);
	errno = 0;
	port = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
		fatal(0, "%s: bad management port '%s'", name, s);
	return (int)port;
}

static void vreport(int ok, const char *fmt, va_list ap)
{
	printf("%s: ", ok ? "PASS" : "FAIL");
	vprintf(fmt, ap);
	putchar('\n');
	if (ok)
		passed++;
	else
		failed++;
}

int check(int cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(cond != 0, fmt, ap);
	va_end(ap);
	return cond != 0;
}

int check_bytes(const uint8_t *got, size_t got_len, const uint8_t *want,
		size_t want_len, const char *fmt, ...)
{
	int ok = got_len == want_len && memcmp(got, want, want_len) == 0;
	va_list ap;

	va_start(ap, fmt);
	vreport(ok, fmt, ap);
	va_end(ap);
	if (!ok) {
		printf("      expected %zu bytes: %s\n", want_len,
		       hex(want, want_len));
		printf("      received %zu bytes: %s\n", got_len,
		       hex(got, got_len));
	}
	return ok;
}

void fatal(int errno_too, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (errno_too)
		printf(": %s", strerror(err));
	printf(" (%s stops here)\n", scenario);
	failed++;
	exit(finish());
}

int finish(void)
{
	printf("%d passed, %d failed\n", passed, failed);
	fflush(stdout);
	return failed > 0 || passed == 0 ? 1 : 0;
}

const char *hex(const uint8_t *p, size_t len)
{
	static char out[64 * 2 + 4];
	size_t i, n = len > 64 ? 64 : len;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
	out[2 * n] = '\0';
	if (len > n)
		strcat(out, "...");
	if (len == 0)
		strcpy(out, "(none)");
	return out;
}

/* --- SCTP I/O ---------------------------------------------------------- */

int mgmt_connect(int port)
{
	struct sctp_event_subscribe events;
	struct sockaddr_in sin;
	struct timeval tv = { .tv_sec = RECV_TIMEOUT_S, .tv_usec = 0 };
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP);
	if (fd < 0)
		fatal(1, "socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) (a kernel "
			 "without SCTP: run under scripts/uml-run.sh)");

	/* SCTP_SNDRCV ancillary data with every message, so that the stream
	 * and PPID of each response can be checked; no notifications. */
	memset(&events, 0, sizeof(events));
	events.sctp_data_io_event = 1;
	if (setsockopt(fd, IPPROTO_SCTP, SCTP_EVENTS, &events,
		       sizeof(events)) < 0)
		fatal(1, "setsockopt(SCTP_EVENTS)");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		fatal(1, "setsockopt(SO_RCVTIMEO)");
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		fatal(1, "setsockopt(SO_SNDTIMEO)");

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		fatal(1, "connect to 127.0.0.1 port %d", port);
	return fd;
}

void mgmt_send_on(int fd, uint16_t stream, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = sctp_sendmsg(fd, buf, len, NULL, 0, 0 /* PPID */, 0,
				 stream, 0, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		fatal(1, "sctp_sendmsg of %zu bytes on stream %u", len,
		      (unsigned)stream);
	if ((size_t)n != len)
		fatal(0, "sctp_sendmsg sent %zd of %zu bytes", n, len);
}

void mgmt_send(int fd, const void *buf, size_t len)
{
	mgmt_send_on(fd, 0, buf, len);
}

size_t mgmt_recv(int fd, uint8_t *buf, size_t cap, struct msg_info *info)
{
	struct sctp_sndrcvinfo sinfo;
	size_t len = 0;
	int first = 1;

	for (;;) {
		ssize_t n;
		int flags = 0;

		if (len == cap)
			fatal(0, "a message longer than %zu bytes", cap);
		memset(&sinfo, 0, sizeof(sinfo));
		n = sctp_recvmsg(fd, buf + len, cap - len, NULL, NULL, &sinfo,
				 &flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				fatal(0, "no whole message within %d s "
					 "(%zu bytes so far)",
				      RECV_TIMEOUT_S, len);
			fatal(1, "sctp_recvmsg");
		}
		if (n == 0) {
			if (len == 0)
				return 0;
			fatal(0, "the association closed in the middle of a "
				 "message (%zu bytes so far)", len);
		}
		if (flags & MSG_NOTIFICATION)
			continue; /* not subscribed; dropped, even in pieces */
		if (first && info != NULL) {
			info->stream = sinfo.sinfo_stream;
			info->ppid = ntohl(sinfo.sinfo_ppid);
		}
		first = 0;
		len += (size_t)n;
		if (flags & MSG_EOR)
			return len;
	}
}

enum close_result mgmt_wait_closed(int fd)
{
	uint8_t buf[256];

	for (;;) {
		int flags = 0;
		ssize_t n = sctp_recvmsg(fd, buf, sizeof(buf), NULL, NULL,
					 NULL, &flags);

		if (n == 0)
			return CLOSE_GRACEFUL;
		if (n > 0) {
			if (flags & MSG_NOTIFICATION)
				continue;
			return CLOSE_MESSAGE;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CLOSE_TIMEOUT;
		return CLOSE_RESET;
	}
}

int check_closed(int fd, const char *fmt, ...)
{
	enum close_result r = mgmt_wait_closed(fd);
	const char *why = "";
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	switch (r) {
	case CLOSE_GRACEFUL:
		break;
	case CLOSE_MESSAGE:
		why = " (another message arrived instead of SHUTDOWN)";
		break;
	case CLOSE_TIMEOUT:
		why = " (the association stayed open)";
		break;
	case CLOSE_RESET:
		why = " (ABORT or error instead of a graceful SHUTDOWN)";
		break;
	}
	return check(r == CLOSE_GRACEFUL, "%s%s", what, why);
}

/* --- message builders --------------------------------------------------- */

uint8_t *put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	if (n > 255)
		fatal(0, "put_str: a string of %zu bytes", n);
	*p++ = (uint8_t)n;
	memcpy(p, s, n);
	return p + n;
}

uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return p + 4;
}

size_t build_login(uint8_t *buf, const char *user, const char *pass)
{
	uint8_t *p = buf;

	*p++ = LOGIN_VER;
	p = put_str(p, user);
	p = put_str(p, pass);
	return (size_t)(p - buf);
}

size_t build_request(uint8_t *buf, uint8_t cmd, const uint8_t *args,
		     size_t args_len)
{
	buf[0] = REQ_VER;
	buf[1] = cmd;
	if (args_len > 0)
		memcpy(buf + 2, args, args_len);
	return 2 + args_len;
}

size_t mgmt_login(int fd, const char *user, const char *pass, uint8_t *reply,
		  size_t cap)
{
	uint8_t msg[2 + 2 * 255 + 1];

	mgmt_send(fd, msg, build_login(msg, user, pass));
	return mgmt_recv(fd, reply, cap, NULL);
}

int mgmt_admin_session(int port)
{
	static const uint8_t ok[] = { LOGIN_VER, LOGIN_SUCCESS };
	uint8_t reply[64];
	size_t n;
	int fd = mgmt_connect(port);

	n = mgmt_login(fd, ADMIN_USER, ADMIN_PASS, reply, sizeof(reply));
	if (!check_bytes(reply, n, ok, sizeof(ok),
			 "log in as %s: reply is X'01' X'00'", ADMIN_USER)) {
		/* Every later step needs the session. */
		printf("      (%s stops here)\n", scenario);
		exit(finish());
	}
	return fd;
}

size_t mgmt_request(int fd, uint8_t cmd, const uint8_t *args, size_t args_len,
		    uint8_t *resp, size_t cap)
{
	uint8_t msg[2 + MGMT_MAX_REQUEST];
	size_t n;

	if (args_len > MGMT_MAX_REQUEST)
		fatal(0, "mgmt_request: %zu bytes of ARGS", args_len);
	mgmt_send(fd, msg, build_request(msg, cmd, args, args_len));
	n = mgmt_recv(fd, resp, cap, NULL);
	if (n == 0)
		fatal(0, "the server closed the session instead of answering "
			 "CMD X'%02X'", cmd);
	return n;
}

int check_session_alive(int fd, const char *after)
{
	uint8_t resp[MGMT_MAX_RESPONSE + 1];
	size_t n = mgmt_request(fd, CMD_METRICS, NULL, 0, resp, sizeof(resp));
	int ok = n >= 4 && resp[0] == REQ_VER && resp[1] == ST_SUCCESS &&
		 resp[2] == CMD_METRICS;

	if (!check(ok, "after %s the session still answers METRICS", after))
		printf("      received %zu bytes: %s\n", n, hex(resp, n));
	return ok;
}

uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}
