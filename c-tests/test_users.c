/* test_users.c - user management (docs/management-protocol.md sections 4 and 5).
 *
 * The server starts with root (administrator) and bob (proxy user).
 * After logging in as root:
 *   ADD_USER X'00' carol        -> 01 00 06
 *   LIST_USERS from 0           -> carol listed with ROLE X'00', names
 *                                  sorted, TOTAL = COUNT, lengths add up
 *   SET_PASSWORD carol          -> 01 00 08
 *   SET_PASSWORD nosuchuser     -> 01 05 08
 *   DELETE_USER carol           -> 01 00 07, LIST_USERS no longer shows her
 *   DELETE_USER carol again     -> 01 05 07
 *   ADD_USER dave, twice        -> 01 00 06, then 01 04 06
 *   DELETE_USER root            -> 01 06 07 (root is the last administrator)
 *   LIST_USERS past TOTAL       -> COUNT 0
 *   the session stays open after every error status.
 * The changes made here are undone at the end (dave is deleted), and the
 * user count is compared with the one at the start.
 */
#include "common.h"

#include <string.h>
#include <unistd.h>

struct user {
	uint8_t role;
	char name[256];
};

/* LIST_USERS from offset; returns COUNT, or -1 if the response is not a
 * well-formed success (reported as a FAIL step). */
static int list_users(int fd, uint32_t offset, uint32_t *total,
		      struct user *users, int max)
{
	uint8_t resp[MGMT_MAX_RESPONSE + 1], args[4];
	size_t n, pos;
	int count, i;

	put_u32(args, offset);
	n = mgmt_request(fd, CMD_LIST_USERS, args, 4, resp, sizeof(resp));
	if (!check(n >= 9 && resp[0] == REQ_VER && resp[1] == ST_SUCCESS &&
			   resp[2] == CMD_LIST_USERS,
		   "LIST_USERS from %u: header 01 00 05, TOTAL, COUNT (%s)",
		   offset, hex(resp, n)))
		return -1;
	*total = get_u32(resp + 3);
	count = get_u16(resp + 7);
	pos = 9;
	for (i = 0; i < count; i++) {
		size_t len;

		if (pos + 2 > n)
			break;
		len = resp[pos + 1];
		if (len == 0 || pos + 2 + len > n)
			break;
		if (i < max) {
			users[i].role = resp[pos];
			memcpy(users[i].name, resp + pos + 2, len);
			users[i].name[len] = '\0';
		}
		pos += 2 + len;
	}
	if (!check(i == count && pos == n && count <= max,
		   "LIST_USERS from %u: COUNT %d entries fill the response "
		   "exactly (%d parsed, %zu of %zu bytes)",
		   offset, count, i, pos, n))
		return -1;
	return count;
}

static const struct user *find(const struct user *u, int count,
			       const char *name)
{
	int i;

	for (i = 0; i < count; i++)
		if (strcmp(u[i].name, name) == 0)
			return &u[i];
	return NULL;
}

/* Sends a request whose response has no DATA and checks all 3 bytes. */
static void expect_status(int fd, uint8_t cmd, const uint8_t *args,
			  size_t len, uint8_t status, const char *what)
{
	const uint8_t want[] = { REQ_VER, status, cmd };
	uint8_t resp[MGMT_MAX_RESPONSE + 1];
	size_t n = mgmt_request(fd, cmd, args, len, resp, sizeof(resp));

	check_bytes(resp, n, want, sizeof(want), "%s -> 01 %02x %02x", what,
		    status, cmd);
}

static size_t user_args(uint8_t *buf, int role, const char *name,
			const char *pass)
{
	uint8_t *p = buf;

	if (role >= 0)
		*p++ = (uint8_t)role;
	p = put_str(p, name);
	if (pass != NULL)
		p = put_str(p, pass);
	return (size_t)(p - buf);
}

int main(int argc, char **argv)
{
	int port = test_init(argc, argv, "test_users");
	struct user users[64];
	const struct user *u;
	uint8_t args[600];
	uint32_t total = 0;
	int count, i, sorted, before;
	int fd = mgmt_admin_session(port);

	before = list_users(fd, 0, &total, users, 64);
	check(before >= 0 && find(users, before, "carol") == NULL &&
		      find(users, before, "dave") == NULL,
	      "LIST_USERS before: %d users, no carol, no dave", before);

	expect_status(fd, CMD_ADD_USER,
		      args, user_args(args, ROLE_PROXY_USER, "carol", "carolpw"),
		      ST_SUCCESS, "ADD_USER proxy user carol");

	count = list_users(fd, 0, &total, users, 64);
	if (count >= 0) {
		check(total == (uint32_t)count,
		      "LIST_USERS: all users in one response (TOTAL %u, "
		      "COUNT %d)", total, count);
		u = find(users, count, "carol");
		check(u != NULL && u->role == ROLE_PROXY_USER,
		      "LIST_USERS shows carol with ROLE 00 (%s, role %d)",
		      u ? "listed" : "missing", u ? u->role : -1);
		u = find(users, count, ADMIN_USER);
		check(u != NULL && u->role == ROLE_ADMIN,
		      "LIST_USERS shows root with ROLE 01");
		u = find(users, count, PROXY_USER);
		check(u != NULL && u->role == ROLE_PROXY_USER,
		      "LIST_USERS shows bob with ROLE 00");
		sorted = 1;
		for (i = 1; i < count; i++)
			if (strcmp(users[i - 1].name, users[i].name) >= 0)
				sorted = 0;
		check(sorted, "LIST_USERS: names sorted, each once");
	}

	expect_status(fd, CMD_SET_PASSWORD, args,
		      user_args(args, -1, "carol", "newcarolpw"), ST_SUCCESS,
		      "SET_PASSWORD carol");
	expect_status(fd, CMD_SET_PASSWORD, args,
		      user_args(args, -1, "nosuchuser", "pw"), ST_NO_SUCH_USER,
		      "SET_PASSWORD of an unknown user");

	expect_status(fd, CMD_DELETE_USER, args,
		      user_args(args, -1, "carol", NULL), ST_SUCCESS,
		      "DELETE_USER carol");
	count = list_users(fd, 0, &total, users, 64);
	if (count >= 0)
		check(find(users, count, "carol") == NULL &&
			      total == (uint32_t)count,
		      "LIST_USERS no longer shows carol (TOTAL %u)", total);
	expect_status(fd, CMD_DELETE_USER, args,
		      user_args(args, -1, "carol", NULL), ST_NO_SUCH_USER,
		      "DELETE_USER carol again");

	expect_status(fd, CMD_ADD_USER, args,
		      user_args(args, ROLE_PROXY_USER, "dave", "davepw"),
		      ST_SUCCESS, "ADD_USER dave");
	expect_status(fd, CMD_ADD_USER, args,
		      user_args(args, ROLE_ADMIN, "dave", "otherpw"),
		      ST_USER_EXISTS, "ADD_USER dave a second time");

	expect_status(fd, CMD_DELETE_USER, args,
		      user_args(args, -1, ADMIN_USER, NULL), ST_FORBIDDEN,
		      "DELETE_USER root, the last administrator");

	if (count >= 0) {
		uint32_t total2 = 0;
		int c = list_users(fd, total + 5, &total2, users, 64);

		check(c == 0, "LIST_USERS from past TOTAL gives COUNT 0 "
			      "(COUNT %d)", c);
	}

	/* Undo, and check that root survived the refused delete. */
	expect_status(fd, CMD_DELETE_USER, args,
		      user_args(args, -1, "dave", NULL), ST_SUCCESS,
		      "DELETE_USER dave (clean up)");
	count = list_users(fd, 0, &total, users, 64);
	if (count >= 0) {
		u = find(users, count, ADMIN_USER);
		check(u != NULL && u->role == ROLE_ADMIN && count == before,
		      "LIST_USERS: root still there, back to %d users "
		      "(COUNT %d)", before, count);
	}
	check_session_alive(fd, "all of the above");

	close(fd);
	return finish();
}
