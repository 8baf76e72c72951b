/*
 * listeners.c: the sockets that listen, in our network namespace.
 *
 *   sys.inet_listeners([how]) -> { {inode=, protocol=, family=, address=, port=}, ... }
 *
 * TCP sockets in LISTEN, UDP sockets bound and not connected (state CLOSE,
 * no peer); IPv4 and IPv6. Asked of the kernel through sock_diag (netlink,
 * as ss does), which for LISTEN alone walks only the listening hash: the
 * same from /proc/net/tcp walks every established slot too, and cost a
 * few ms a read on a machine with a large hash. Where sock_diag is
 * missing (a kernel without inet_diag, udp_diag), /proc/net's tables;
 * how = "proc" reads those only (the specs compare the two).
 */
#define _GNU_SOURCE
#include "readers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN 0x0A /* TCP_LISTEN */
#define CLOSE 0x07  /* TCP_CLOSE: a UDP socket not connected */

static const struct table {
  const char *path, *protocol;
  int family, ipproto;
  unsigned state;
} tables[] = {
    {"/proc/net/tcp", "tcp", 4, IPPROTO_TCP, LISTEN},
    {"/proc/net/tcp6", "tcp", 6, IPPROTO_TCP, LISTEN},
    {"/proc/net/udp", "udp", 4, IPPROTO_UDP, CLOSE},
    {"/proc/net/udp6", "udp", 6, IPPROTO_UDP, CLOSE},
};

/* Push a listener of table t onto the array at the top: addr its bytes
 * (4 or 16). */
static void push(lua_State *L, const struct table *t, const void *addr, unsigned port,
                 unsigned long long inode) {
  char text[INET6_ADDRSTRLEN];
  inet_ntop(t->family == 4 ? AF_INET : AF_INET6, addr, text, sizeof text);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)inode);
  lua_setfield(L, -2, "inode");
  lua_pushstring(L, t->protocol);
  lua_setfield(L, -2, "protocol");
  lua_pushinteger(L, t->family);
  lua_setfield(L, -2, "family");
  lua_pushstring(L, text);
  lua_setfield(L, -2, "address");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* A socket of t's state, bound to a port, with no peer, is a listener. */
static int listens(const struct table *t, unsigned state, unsigned port, const void *peer,
                   unsigned peer_port, unsigned long long inode) {
  static const unsigned char zero[16];
  return state == t->state && port != 0 && inode != 0 && peer_port == 0 &&
         memcmp(peer, zero, t->family == 4 ? 4 : 16) == 0;
}

/* ---- sock_diag ------------------------------------------------------------ */

/* Dump t's sockets in its state through netlink socket nl onto the array:
 * 0, or an errno (ENOENT, EOPNOTSUPP...: no diag module for it). */
static int diag_dump(lua_State *L, int nl, const struct table *t) {
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  memset(&msg, 0, sizeof msg);
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = t->family == 4 ? AF_INET : AF_INET6;
  msg.req.sdiag_protocol = (uint8_t)t->ipproto;
  msg.req.idiag_states = 1u << t->state;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(nl, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return errno;
  _Alignas(struct nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(nl, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    /* signed: NLMSG_NEXT may take the count below zero, which ends the loop */
    long left = (long)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error ? -e->error : EIO;
      }
      const struct inet_diag_msg *m = NLMSG_DATA(h);
      unsigned port = ntohs(m->id.idiag_sport), peer_port = ntohs(m->id.idiag_dport);
      if (listens(t, m->idiag_state, port, m->id.idiag_dst, peer_port, m->idiag_inode))
        push(L, t, m->id.idiag_src, port, m->idiag_inode);
    }
  }
}

/* ---- /proc/net ------------------------------------------------------------ */

/* An address as /proc/net prints it (each 32-bit word in the kernel's
 * byte order, as hex) into its bytes. */
static void unhex(const char *hex, unsigned char *out, size_t words) {
  for (size_t i = 0; i < words; i++) {
    char word[9];
    memcpy(word, hex + 8 * i, 8);
    word[8] = '\0';
    uint32_t w = (uint32_t)strtoul(word, NULL, 16);
    memcpy(out + 4 * i, &w, 4);
  }
}

/* One line of a table onto the array if it is a listener's. The header
 * and odd lines do not scan and are skipped. */
static void add_line(lua_State *L, const struct table *t, const char *line) {
  char local[33], remote[33];
  unsigned lport, rport, state;
  unsigned long long inode;
  if (sscanf(line, " %*u: %32[0-9A-Fa-f]:%x %32[0-9A-Fa-f]:%x %x %*x:%*x %*x:%*x %*x %*u %*u %llu",
             local, &lport, remote, &rport, &state, &inode) != 6)
    return;
  size_t words = t->family == 4 ? 1 : 4;
  if (strlen(local) != 8 * words || strlen(remote) != 8 * words) return;
  unsigned char addr[16], peer[16];
  unhex(local, addr, words);
  unhex(remote, peer, words);
  if (listens(t, state, lport, peer, rport, inode)) push(L, t, addr, lport, inode);
}

/* t's listeners from its /proc/net table onto the array: 0 or an errno.
 * A table the kernel lacks (no IPv6) has none. */
static int proc_table(lua_State *L, bg_handle *h, const struct table *t) {
  h->file = fopen(t->path, "re");
  if (h->file == NULL) return errno == ENOENT ? 0 : errno;
  char line[512];
  while (fgets(line, sizeof line, h->file) != NULL) add_line(L, t, line);
  fclose(h->file);
  h->file = NULL;
  return 0;
}

/* sys.inet_listeners([how]) -> the listeners, each with its socket's
 * inode | nil, msg, errname. how: "diag" (the default) or "proc". */
int bg_sys_inet_listeners(lua_State *L) {
  static const char *const hows[] = {"diag", "proc", NULL};
  int diag = luaL_checkoption(L, 1, "diag", hows) == 0;
  lua_settop(L, 0);
  bg_handle *h = bg_sys_handle(L); /* fd: the netlink socket */
  lua_newtable(L);
  if (diag) h->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    if (h->fd >= 0) {
      lua_Integer before = (lua_Integer)lua_rawlen(L, 2);
      if (diag_dump(L, h->fd, &tables[i]) == 0) continue;
      /* not used again (what is left of a dump would come first), and
       * what this one pushed is read again from /proc/net */
      close(h->fd);
      h->fd = -1;
      for (lua_Integer k = (lua_Integer)lua_rawlen(L, 2); k > before; k--) {
        lua_pushnil(L);
        lua_rawseti(L, 2, k);
      }
    }
    int err = proc_table(L, h, &tables[i]);
    if (err) return bg_sys_fail(L, err, lua_pushfstring(L, "open %s", tables[i].path));
  }
  bg_sys_handle_close(h);
  return 1;
}
