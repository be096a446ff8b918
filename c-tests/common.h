/* common.h - shared helpers for the socks5d management protocol C tests.
 *
 * An independent client-side implementation of the wire format in
 * docs/management-protocol.md (management protocol, version 1), written in the
 * style of lksctp-tools src/func_tests/: every step prints one
 * "PASS: ..." or "FAIL: ..." line, and finish() prints "N passed, N failed"
 * alone on the last line.
 *
 * Helpers named mgmt_* fail loudly: when the socket layer itself fails (no
 * connection, a send error, a receive timeout) they print a FAIL line that
 * says what and why, print the summary and exit, so that no scenario goes on
 * from a state it did not expect and nothing hangs.
 */
#ifndef SOCKS5D_CTESTS_COMMON_H
#define SOCKS5D_CTESTS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* docs/management-protocol.md section 2: largest request and response. */
#define MGMT_MAX_REQUEST 1024
#define MGMT_MAX_RESPONSE 65535

/* Section 2: log in. */
#define LOGIN_VER 0x01
#define LOGIN_SUCCESS 0x00
#define LOGIN_BAD_CREDENTIALS 0x01
#define LOGIN_BAD_VERSION 0x02
#define LOGIN_SERVER_ERROR 0x03
#define LOGIN_MALFORMED 0x04

/* Section 3: requests. */
#define REQ_VER 0x01
#define CMD_HISTORIC_CONNECTIONS 0x01
#define CMD_CONCURRENT_CONNECTIONS 0x02
#define CMD_BYTES_TRANSFERRED 0x03
#define CMD_METRICS 0x04
#define CMD_LIST_USERS 0x05
#define CMD_ADD_USER 0x06
#define CMD_DELETE_USER 0x07
#define CMD_SET_PASSWORD 0x08

#define ROLE_PROXY_USER 0x00
#define ROLE_ADMIN 0x01

/* Section 4: response status codes. */
#define ST_SUCCESS 0x00
#define ST_UNSUPPORTED_VERSION 0x01
#define ST_UNKNOWN_COMMAND 0x02
#define ST_MALFORMED 0x03
#define ST_USER_EXISTS 0x04
#define ST_NO_SUCH_USER 0x05
#define ST_FORBIDDEN 0x06
#define ST_SERVER_ERROR 0x07
#define ST_LIMIT_REACHED 0x08

/* Credentials run.sh gives the server (--admin root:rootpw -u bob:bobpw). */
#define ADMIN_USER "root"
#define ADMIN_PASS "rootpw"
#define PROXY_USER "bob"
#define PROXY_PASS "bobpw"

/* Seconds any one receive may wait before the step fails. */
#define RECV_TIMEOUT_S 5

/* Where a received message came from (filled from the SCTP_SNDRCV ancillary
 * data, which mgmt_connect() subscribes to). */
struct msg_info {
	uint16_t stream;
	uint32_t ppid;
};

/* --- test bookkeeping ------------------------------------------------ */

/* Call first: records the scenario name, makes stdout line-buffered,
 * ignores SIGPIPE and returns the management port taken from argv[1] or
 * from the environment variable SOCKS5D_MGMT_PORT (fails loudly if none). */
int test_init(int argc, char **argv, const char *scenario);

/* Prints "PASS: what" or "FAIL: what" and counts it; returns cond != 0. */
int check(int cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Compares a received message with the expected bytes; on a mismatch the
 * FAIL line shows both in hex. Returns 1 when equal. */
int check_bytes(const uint8_t *got, size_t got_len, const uint8_t *want,
		size_t want_len, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Prints a FAIL line (with strerror(errno) when errno_too), the summary, and
 * exits with status 1. */
void fatal(int errno_too, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Prints "N passed, N failed" and returns the exit status (1 if any step
 * failed or none passed). */
int finish(void);

/* --- SCTP I/O ---------------------------------------------------------- */

/* Opens a one-to-one (SOCK_STREAM) SCTP socket with SO_RCVTIMEO, connects it
 * to 127.0.0.1:port and returns it. */
int mgmt_connect(int port);

/* Sends buf as exactly one SCTP user message on the given stream, PPID 0. */
void mgmt_send_on(int fd, uint16_t stream, const void *buf, size_t len);
void mgmt_send(int fd, const void *buf, size_t len);

/* Receives one whole message (looping over sctp_recvmsg until MSG_EOR,
 * skipping notifications). Returns its length; returns 0 if the server closed
 * the association before any byte of a message. Fails loudly on a timeout, an
 * error or a message longer than cap. info may be NULL. */
size_t mgmt_recv(int fd, uint8_t *buf, size_t cap, struct msg_info *info);

/* What mgmt_wait_closed() saw. */
enum close_result {
	CLOSE_GRACEFUL = 1, /* sctp_recvmsg returned 0: SHUTDOWN (SCTP_EOF) */
	CLOSE_MESSAGE = 0,  /* a message arrived instead */
	CLOSE_TIMEOUT = -1, /* nothing within RECV_TIMEOUT_S */
	CLOSE_RESET = -2,   /* ECONNRESET or another error: ABORT, not EOF */
};

/* Waits (at most RECV_TIMEOUT_S) for the server to close the association.
 * Prints nothing. */
enum close_result mgmt_wait_closed(int fd);

/* One step: PASS if the server shuts the association down gracefully next,
 * FAIL (saying what came instead) otherwise. */
int check_closed(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* --- message builders --------------------------------------------------- */

/* Appends LEN then the bytes of s (s must be 1..255 bytes); returns the new
 * end. */
uint8_t *put_str(uint8_t *p, const char *s);
uint8_t *put_u32(uint8_t *p, uint32_t v);

/* The log-in message: VER X'01', ULEN, UNAME, PLEN, PASSWD. */
size_t build_login(uint8_t *buf, const char *user, const char *pass);

/* A request: VER X'01', CMD, ARGS. */
size_t build_request(uint8_t *buf, uint8_t cmd, const uint8_t *args,
		     size_t args_len);

/* Sends a log-in and returns the reply's length (0 if the association closed
 * instead). */
size_t mgmt_login(int fd, const char *user, const char *pass, uint8_t *reply,
		  size_t cap);

/* Connects and logs in as the administrator: one step, "log in as root",
 * that passes when the reply is X'01' X'00'; otherwise it fails and the
 * scenario stops (finish() and exit). */
int mgmt_admin_session(int port);

/* Sends a request and receives its response; returns the response length. */
size_t mgmt_request(int fd, uint8_t cmd, const uint8_t *args, size_t args_len,
		    uint8_t *resp, size_t cap);

/* Checks that the session still answers: METRICS gets a success response
 * with the right header. Counts as one step. */
int check_session_alive(int fd, const char *after);

uint16_t get_u16(const uint8_t *p);
uint32_t get_u32(const uint8_t *p);
uint64_t get_u64(const uint8_t *p);

/* Hex of up to 64 bytes into a static buffer (for messages). */
const char *hex(const uint8_t *p, size_t len);

#endif
