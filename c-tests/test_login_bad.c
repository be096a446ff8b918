/* test_login_bad.c - log-in failures (docs/management-protocol.md section 3).
 *
 * Every case runs on its own association. After any status other than
 * X'00' the server must send the reply, then close the association
 * gracefully (SHUTDOWN: sctp_recvmsg returns 0).
 *
 *   wrong password for root           -> X'01' X'01', closed
 *   unknown user                      -> X'01' X'01', closed
 *   proxy user bob (not an admin)     -> X'01' X'01', closed
 *   VER X'02'                         -> X'01' X'02', closed
 *   ULEN 0                            -> X'01' X'04', closed
 *   PLEN 0                            -> X'01' X'04', closed
 *   lengths that do not add up        -> X'01' X'04', closed
 *
 * The reply's own VER is X'01' (the version of this protocol), also when the
 * client sent X'02'.
 */
#include "common.h"

#include <string.h>
#include <unistd.h>

static void try_login(int port, const char *what, const uint8_t *msg,
		      size_t len, uint8_t want_status)
{
	const uint8_t want[] = { LOGIN_VER, want_status };
	uint8_t reply[MGMT_MAX_RESPONSE + 1];
	int fd = mgmt_connect(port);
	size_t n;

	mgmt_send(fd, msg, len);
	n = mgmt_recv(fd, reply, sizeof(reply), NULL);
	check_bytes(reply, n, want, sizeof(want), "%s: reply is X'01' X'%02X'",
		    what, want_status);
	if (n != 0)
		check_closed(fd, "%s: then the server closes the association",
			     what);
	else
		check(0, "%s: then the server closes the association (it "
			 "closed without a reply)", what);
	close(fd);
}

int main(int argc, char **argv)
{
	int port = test_init(argc, argv, "test_login_bad");
	uint8_t msg[600];
	size_t n;

	n = build_login(msg, ADMIN_USER, "wrongpw");
	try_login(port, "wrong password for root", msg, n,
		  LOGIN_BAD_CREDENTIALS);

	/* Same length as the right password: only the bytes differ. */
	n = build_login(msg, ADMIN_USER, "rootpx");
	try_login(port, "password differing in its last byte", msg, n,
		  LOGIN_BAD_CREDENTIALS);

	n = build_login(msg, "nosuchuser", ADMIN_PASS);
	try_login(port, "unknown user", msg, n, LOGIN_BAD_CREDENTIALS);

	n = build_login(msg, PROXY_USER, PROXY_PASS);
	try_login(port, "proxy user bob with his right password", msg, n,
		  LOGIN_BAD_CREDENTIALS);

	n = build_login(msg, ADMIN_USER, ADMIN_PASS);
	msg[0] = 0x02;
	try_login(port, "VER X'02' with root's right password", msg, n,
		  LOGIN_BAD_VERSION);

	/* VER ULEN=0 PLEN PASSWD */
	memcpy(msg, "\x01\x00\x06rootpw", 9);
	try_login(port, "ULEN 0", msg, 9, LOGIN_MALFORMED);

	/* VER ULEN UNAME PLEN=0 */
	memcpy(msg, "\x01\x04root\x00", 7);
	try_login(port, "PLEN 0", msg, 7, LOGIN_MALFORMED);

	/* root/rootpw followed by one byte too many */
	n = build_login(msg, ADMIN_USER, ADMIN_PASS);
	msg[n++] = 'x';
	try_login(port, "one trailing byte after PASSWD", msg, n,
		  LOGIN_MALFORMED);

	/* PLEN says 6, only 5 bytes follow */
	n = build_login(msg, ADMIN_USER, ADMIN_PASS);
	try_login(port, "PASSWD one byte short of PLEN", msg, n - 1,
		  LOGIN_MALFORMED);

	return finish();
}
