/* test_malformed.c - bad requests after log in (docs/management-protocol.md sections 4, 5, 7).
 *
 * Each bad request gets a 3-byte response X'01' STATUS CMD (no DATA, since
 * STATUS is not X'00'), changes nothing, and does not close the session: after
 * each one the session still answers METRICS.
 *
 *   VER X'02' HISTORIC                      -> 01 01 01
 *   CMD X'0B' (reserved)                    -> 01 02 0b
 *   CMD X'80' (private, none defined)       -> 01 02 80
 *   ADD_USER truncated inside UNAME         -> 01 03 06
 *   ADD_USER without PASSWD                 -> 01 03 06
 *   HISTORIC with a trailing byte           -> 01 03 01
 *   METRICS with trailing bytes             -> 01 03 04
 *   LIST_USERS with a 3-byte OFFSET         -> 01 03 05
 *   ADD_USER with ROLE X'02'                -> 01 03 06
 *   ADD_USER name containing ':'            -> 01 03 06
 *   ADD_USER name containing X'7F'          -> 01 03 06
 *   ADD_USER password containing LF         -> 01 03 06
 *   DELETE_USER with ULEN 0                 -> 01 03 07
 *   a 1025-byte request (ADD_USER + junk)   -> 01 03 06
 * and finally LIST_USERS shows none of the users those requests named.
 */
#include "common.h"

#include <string.h>
#include <unistd.h>

static void bad(int fd, const char *what, const uint8_t *msg, size_t len,
		uint8_t status, uint8_t cmd)
{
	const uint8_t want[] = { REQ_VER, status, cmd };
	uint8_t resp[MGMT_MAX_RESPONSE + 1];
	size_t n;

	mgmt_send(fd, msg, len);
	n = mgmt_recv(fd, resp, sizeof(resp), NULL);
	if (n == 0)
		fatal(0, "%s: the server closed the session instead of "
			 "answering 01 %02x %02x", what, status, cmd);
	check_bytes(resp, n, want, sizeof(want), "%s -> 01 %02x %02x", what,
		    status, cmd);
	check_session_alive(fd, what);
}

int main(int argc, char **argv)
{
	int port = test_init(argc, argv, "test_malformed");
	uint8_t msg[2048], resp[MGMT_MAX_RESPONSE + 1], *p;
	size_t n, i;
	int fd = mgmt_admin_session(port);

	bad(fd, "request with VER 2", (const uint8_t *)"\x02\x01", 2,
	    ST_UNSUPPORTED_VERSION, CMD_HISTORIC_CONNECTIONS);
	bad(fd, "CMD X'0B' (reserved)", (const uint8_t *)"\x01\x0b", 2,
	    ST_UNKNOWN_COMMAND, 0x0b);
	bad(fd, "CMD X'80' (private)", (const uint8_t *)"\x01\x80", 2,
	    ST_UNKNOWN_COMMAND, 0x80);

	/* ROLE 00, ULEN 5, only "car" */
	bad(fd, "ADD_USER truncated inside UNAME",
	    (const uint8_t *)"\x01\x06\x00\x05" "car", 7, ST_MALFORMED,
	    CMD_ADD_USER);
	/* ROLE 00, ULEN 5 "carol", no PLEN */
	bad(fd, "ADD_USER without PLEN and PASSWD",
	    (const uint8_t *)"\x01\x06\x00\x05" "carol", 9, ST_MALFORMED,
	    CMD_ADD_USER);
	bad(fd, "HISTORIC_CONNECTIONS with a trailing byte",
	    (const uint8_t *)"\x01\x01\x00", 3, ST_MALFORMED,
	    CMD_HISTORIC_CONNECTIONS);
	bad(fd, "METRICS with 4 trailing bytes",
	    (const uint8_t *)"\x01\x04\x00\x00\x00\x00", 6, ST_MALFORMED,
	    CMD_METRICS);
	bad(fd, "LIST_USERS with a 3-byte OFFSET",
	    (const uint8_t *)"\x01\x05\x00\x00\x00", 5, ST_MALFORMED,
	    CMD_LIST_USERS);
	bad(fd, "ADD_USER with ROLE X'02'",
	    (const uint8_t *)"\x01\x06\x02\x05" "carol" "\x02" "pw", 12,
	    ST_MALFORMED, CMD_ADD_USER);
	bad(fd, "ADD_USER of a name with ':'",
	    (const uint8_t *)"\x01\x06\x00\x05" "ca:ol" "\x02" "pw", 12,
	    ST_MALFORMED, CMD_ADD_USER);
	bad(fd, "ADD_USER of a name with X'7F'",
	    (const uint8_t *)"\x01\x06\x00\x05" "ca\x7fol" "\x02" "pw", 12,
	    ST_MALFORMED, CMD_ADD_USER);
	bad(fd, "ADD_USER with a password containing LF",
	    (const uint8_t *)"\x01\x06\x00\x05" "carol" "\x02" "p\n", 12,
	    ST_MALFORMED, CMD_ADD_USER);
	bad(fd, "DELETE_USER with ULEN 0", (const uint8_t *)"\x01\x07\x00", 3,
	    ST_MALFORMED, CMD_DELETE_USER);

	/* A well-formed ADD_USER of "longuser", then junk up to 1025 bytes:
	 * over the 1024-byte limit of section 1. */
	p = msg;
	*p++ = REQ_VER;
	*p++ = CMD_ADD_USER;
	*p++ = ROLE_PROXY_USER;
	p = put_str(p, "longuser");
	p = put_str(p, "longpw");
	n = (size_t)(p - msg);
	for (i = n; i < MGMT_MAX_REQUEST + 1; i++)
		msg[i] = 'x';
	bad(fd, "request of 1025 bytes (over 1024)", msg,
	    MGMT_MAX_REQUEST + 1, ST_MALFORMED, CMD_ADD_USER);

	/* Nothing above changed the user table. */
	put_u32(msg, 0);
	n = mgmt_request(fd, CMD_LIST_USERS, msg, 4, resp, sizeof(resp));
	{
		int found = 0;
		static const char *const names[] = { "car", "carol", "ca:ol",
						     "ca\x7fol", "longuser" };

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			size_t len = strlen(names[i]);
			size_t pos = 9;

			while (n >= 9 && pos + 2 <= n) {
				size_t l = resp[pos + 1];

				if (l == len && pos + 2 + l <= n &&
				    memcmp(resp + pos + 2, names[i], l) == 0)
					found++;
				pos += 2 + l;
			}
		}
		check(n >= 9 && resp[1] == ST_SUCCESS && found == 0,
		      "LIST_USERS: none of the malformed requests added a "
		      "user (%d found)", found);
	}

	close(fd);
	return finish();
}
