/* test_metrics.c - the monitoring requests (docs/management-protocol.md sections 4 and 2).
 *
 * After logging in as root:
 *   HISTORIC_CONNECTIONS, CONCURRENT_CONNECTIONS, BYTES_TRANSFERRED each
 *   answer exactly 11 bytes: X'01' X'00' CMD and a u64;
 *   METRICS answers X'01' X'00' X'04' N, then N times ID + u64: the length is
 *   4 + 9 N, N >= 8, and every ID X'01'..X'08' appears exactly once;
 *   with no SOCKS traffic in between, METRICS IDs 01..03 equal the values of
 *   CMD 01..03;
 *   a request sent on stream 1 is answered on stream 1, with PPID 0;
 *   pipelined requests are answered one message each, in order.
 */
#include "common.h"

#include <string.h>
#include <unistd.h>

static const char *const names[] = {
	[CMD_HISTORIC_CONNECTIONS] = "HISTORIC_CONNECTIONS",
	[CMD_CONCURRENT_CONNECTIONS] = "CONCURRENT_CONNECTIONS",
	[CMD_BYTES_TRANSFERRED] = "BYTES_TRANSFERRED",
};

int main(int argc, char **argv)
{
	int port = test_init(argc, argv, "test_metrics");
	uint8_t resp[MGMT_MAX_RESPONSE + 1], req[4];
	uint64_t single[4] = { 0 }, metric[9] = { 0 };
	int seen[256] = { 0 };
	struct msg_info info;
	uint8_t cmd;
	size_t n, i;
	int fd = mgmt_admin_session(port);

	for (cmd = CMD_HISTORIC_CONNECTIONS; cmd <= CMD_BYTES_TRANSFERRED;
	     cmd++) {
		n = mgmt_request(fd, cmd, NULL, 0, resp, sizeof(resp));
		check(n == 11 && resp[0] == REQ_VER &&
			      resp[1] == ST_SUCCESS && resp[2] == cmd,
		      "%s: 11 bytes, header 01 00 %02x (%s)", names[cmd], cmd,
		      hex(resp, n));
		if (n == 11)
			single[cmd] = get_u64(resp + 3);
	}

	n = mgmt_request(fd, CMD_METRICS, NULL, 0, resp, sizeof(resp));
	check(n >= 4 && resp[0] == REQ_VER && resp[1] == ST_SUCCESS &&
		      resp[2] == CMD_METRICS,
	      "METRICS: header 01 00 04 (%s)", hex(resp, n < 4 ? n : 4));
	if (n >= 4) {
		size_t count = resp[3];

		check(count >= 8, "METRICS: N = %zu >= 8", count);
		check(n == 4 + 9 * count,
		      "METRICS: length %zu = 4 + 9 * N (%zu)", n,
		      4 + 9 * count);
		for (i = 0; i < count && 4 + 9 * i + 9 <= n; i++) {
			const uint8_t *e = resp + 4 + 9 * i;

			seen[e[0]]++;
			if (e[0] >= 1 && e[0] <= 8)
				metric[e[0]] = get_u64(e + 1);
		}
		for (i = 1; i <= 8; i++)
			check(seen[i] == 1,
			      "METRICS: ID %02zx appears exactly once "
			      "(%d times)", i, seen[i]);
		for (i = 1; i <= 3; i++)
			check(metric[i] == single[i],
			      "METRICS: ID %02zx = %llu equals %s = %llu", i,
			      (unsigned long long)metric[i], names[i],
			      (unsigned long long)single[i]);
		check(metric[3] == metric[4] + metric[5],
		      "METRICS: bytes transferred (%llu) = client to target "
		      "(%llu) + target to client (%llu)",
		      (unsigned long long)metric[3],
		      (unsigned long long)metric[4],
		      (unsigned long long)metric[5]);
	}

	/* A response goes out on the stream its request came in on. */
	mgmt_send_on(fd, 1, req,
		     build_request(req, CMD_HISTORIC_CONNECTIONS, NULL, 0));
	memset(&info, 0xff, sizeof(info));
	n = mgmt_recv(fd, resp, sizeof(resp), &info);
	check(n == 11 && resp[2] == CMD_HISTORIC_CONNECTIONS &&
		      info.stream == 1 && info.ppid == 0,
	      "HISTORIC_CONNECTIONS sent on stream 1 is answered on stream 1 "
	      "with PPID 0 (stream %u, PPID %u, %s)",
	      (unsigned)info.stream, (unsigned)info.ppid, hex(resp, n));

	/* Three requests back to back, then three responses, in order and
	 * never merged into one message. */
	for (cmd = CMD_HISTORIC_CONNECTIONS; cmd <= CMD_BYTES_TRANSFERRED;
	     cmd++)
		mgmt_send(fd, req, build_request(req, cmd, NULL, 0));
	for (cmd = CMD_HISTORIC_CONNECTIONS; cmd <= CMD_BYTES_TRANSFERRED;
	     cmd++) {
		n = mgmt_recv(fd, resp, sizeof(resp), NULL);
		check(n == 11 && resp[1] == ST_SUCCESS && resp[2] == cmd,
		      "pipelined request %u of 3: its own 11-byte response, "
		      "CMD %02x (%s)", cmd, cmd, hex(resp, n));
	}

	close(fd);
	return finish();
}
