/* test_login_ok.c - an administrator logs in (docs/management-protocol.md section 3).
 *
 * Steps:
 *   1. connect a one-to-one SCTP socket to the management port: SCTP_STATUS
 *      says the association is ESTABLISHED, its primary path 127.0.0.1:PORT;
 *   2. send X'01' X'04' "root" X'06' "rootpw" as one message;
 *   3. the reply is exactly X'01' X'00', on stream 0 with PPID 0;
 *   4. the session is established: HISTORIC_CONNECTIONS gets a success
 *      response;
 *   5. a second association may log in too (one association, one session).
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/sctp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One step: fd's association is ESTABLISHED and its primary path leads to
 * 127.0.0.1:port (SCTP_STATUS, RFC 6458 section 8.2.1). */
static int check_established(int fd, int port)
{
	struct sctp_status st;
	const struct sockaddr_in *peer =
		(const struct sockaddr_in *)&st.sstat_primary.spinfo_address;
	socklen_t len = sizeof(st);
	char addr[INET_ADDRSTRLEN] = "?";

	memset(&st, 0, sizeof(st));
	if (getsockopt(fd, IPPROTO_SCTP, SCTP_STATUS, &st, &len) < 0)
		return check(0, "connect to 127.0.0.1 port %d: "
				"getsockopt(SCTP_STATUS): %s",
			     port, strerror(errno));
	if (peer->sin_family == AF_INET)
		inet_ntop(AF_INET, &peer->sin_addr, addr, sizeof(addr));
	return check(st.sstat_state == SCTP_ESTABLISHED &&
			     peer->sin_family == AF_INET &&
			     peer->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
			     ntohs(peer->sin_port) == port,
		     "connect to 127.0.0.1 port %d: the association is "
		     "ESTABLISHED (state %d), primary path %s port %u",
		     port, (int)st.sstat_state, addr,
		     (unsigned)ntohs(peer->sin_port));
}

int main(int argc, char **argv)
{
	static const uint8_t success[] = { LOGIN_VER, LOGIN_SUCCESS };
	uint8_t login[64], reply[MGMT_MAX_RESPONSE + 1];
	struct msg_info info;
	int port = test_init(argc, argv, "test_login_ok");
	size_t n;
	int fd, fd2;

	fd = mgmt_connect(port);
	check_established(fd, port);

	n = build_login(login, ADMIN_USER, ADMIN_PASS);
	check(n == 13 && memcmp(login, "\x01\x04root\x06rootpw", 13) == 0,
	      "log-in message is 01 04 'root' 06 'rootpw' (%s)", hex(login, n));
	mgmt_send(fd, login, n);
	n = mgmt_recv(fd, reply, sizeof(reply), &info);
	check_bytes(reply, n, success, sizeof(success),
		    "log in as %s: reply is X'01' X'00'", ADMIN_USER);
	check(info.stream == 0 && info.ppid == 0,
	      "the reply came on stream 0 with PPID 0 (stream %u, PPID %u)",
	      (unsigned)info.stream, (unsigned)info.ppid);

	n = mgmt_request(fd, CMD_HISTORIC_CONNECTIONS, NULL, 0, reply,
			 sizeof(reply));
	check(n == 11 && reply[0] == REQ_VER && reply[1] == ST_SUCCESS &&
		      reply[2] == CMD_HISTORIC_CONNECTIONS,
	      "the session is established: HISTORIC_CONNECTIONS answers "
	      "01 00 01 + u64 (%s)", hex(reply, n));

	fd2 = mgmt_connect(port);
	n = mgmt_login(fd2, ADMIN_USER, ADMIN_PASS, reply, sizeof(reply));
	check_bytes(reply, n, success, sizeof(success),
		    "a second association logs in too while the first is open");
	close(fd2);
	close(fd);
	return finish();
}
