/*
 * http.c: a non-blocking HTTP probe, for "wait until this URL answers".
 *
 *   sys.http_probe(ip, port, path, timeout_ms) -> Probe | nil, msg, errname
 *   probe:poll()  -> "pending" | status (integer) | nil, msg, errname
 *   probe:close()
 *
 * One GET, polled: every poll() advances it as far as it can without
 * blocking (connect, send, read) and returns. Only the status line is
 * read (at most 4 KiB); the fd is closed as soon as the answer is known,
 * and poll() keeps returning that answer.
 */
#define _GNU_SOURCE
#include "readers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MT "bgproc.sys.HttpProbe"
#define MAX_PATH 8192

enum phase { CONNECTING, SENDING, READING, DONE };

typedef struct probe {
  int fd;
  int closed; /* probe:close() was called: poll() is misuse */
  enum phase phase;
  int status, err; /* DONE: the status, or err and why */
  long long deadline_ms;
  lua_Integer timeout_ms;
  char where[64]; /* "127.0.0.1:8080", "[::1]:8080" */
  char why[128];
  size_t got, sent, req_len;
  char buf[4096];
  char req[]; /* the request, req_len bytes */
} probe;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void finish(probe *p, int status, int err, const char *why) {
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  p->phase = DONE;
  p->status = status;
  p->err = err;
  snprintf(p->why, sizeof p->why, "%s %s", why, p->where);
}

/* The status of "HTTP/1.x NNN ..." (the line without its '\n'), or 0. */
static int parse_status(const char *s, size_t len) {
  if (len > 0 && s[len - 1] == '\r') len--;
  if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
    return 0;
  int status = 0;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    status = status * 10 + (s[i] - '0');
  }
  return (len == 12 || s[12] == ' ') && status >= 100 ? status : 0;
}

/* Read until the status line is complete (or the buffer full). */
static void read_status(probe *p) {
  for (;;) {
    if (p->got == sizeof p->buf)
      return finish(p, 0, EPROTO, "no status line in the first 4 KiB from");
    ssize_t n = recv(p->fd, p->buf + p->got, sizeof p->buf - p->got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) return finish(p, 0, errno, "receive from");
    if (n == 0)
      return finish(p, 0, EPROTO, p->got ? "connection closed inside the status line by"
                                         : "connection closed without an answer by");
    const char *eol = memchr(p->buf + p->got, '\n', (size_t)n);
    p->got += (size_t)n;
    if (eol == NULL) continue;
    int status = parse_status(p->buf, (size_t)(eol - p->buf));
    return status ? finish(p, status, 0, "answer from")
                  : finish(p, 0, EPROTO, "not an HTTP/1.x status line from");
  }
}

static void send_request(probe *p) {
  while (p->sent < p->req_len) {
    ssize_t n = send(p->fd, p->req + p->sent, p->req_len - p->sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) return finish(p, 0, errno, "send to");
    p->sent += (size_t)n;
  }
  p->phase = READING;
}

/* Advance as far as possible without blocking. */
static void step(probe *p) {
  if (p->phase == CONNECTING) {
    struct pollfd pf = {p->fd, POLLOUT, 0};
    if (poll(&pf, 1, 0) <= 0) return; /* not yet (or EINTR: next time) */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) return finish(p, 0, err, "connect to");
    p->phase = SENDING;
  }
  if (p->phase == SENDING) send_request(p);
  if (p->phase == READING) read_status(p);
}

/* ip into sa (IPv4 or IPv6 literal) and "ip:port" into where: its
 * length, or 0 if ip is no literal. */
static socklen_t address(const char *ip, int port, struct sockaddr_storage *sa,
                         char *where, size_t cap) {
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *in = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
  if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    snprintf(where, cap, "%s:%d", ip, port);
    return sizeof *in;
  }
  if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    snprintf(where, cap, "[%s]:%d", ip, port);
    return sizeof *in6;
  }
  return 0;
}

/* A request target may not hold what would end the request line. */
static int clean_path(const char *path, size_t len) {
  if (len == 0 || path[0] != '/' || len > MAX_PATH) return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)path[i] <= ' ' || path[i] == 0x7f) return 0;
  return 1;
}

static const char REQUEST[] =
    "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: bgproc\r\n\r\n";

/* sys.http_probe(ip, port, path, timeout_ms) -> Probe | nil, msg, errname
 * (only when no socket can be made: a refused connection is poll's). */
int bg_sys_http_probe(lua_State *L) {
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  size_t plen;
  const char *path = luaL_checklstring(L, 3, &plen);
  lua_Integer timeout = luaL_checkinteger(L, 4);
  luaL_argcheck(L, port > 0 && port <= 65535, 2, "port must be 1..65535");
  luaL_argcheck(L, clean_path(path, plen), 3,
                "a path starting with '/', without spaces or control characters");
  luaL_argcheck(L, timeout > 0 && timeout <= 86400000, 4, "timeout_ms must be 1..86400000");
  struct sockaddr_storage sa;
  char where[64];
  socklen_t salen = address(ip, (int)port, &sa, where, sizeof where);
  luaL_argcheck(L, salen > 0, 1, "an IPv4 or IPv6 address literal expected");
  size_t req_len = (size_t)snprintf(NULL, 0, REQUEST, path, where);
  probe *p = lua_newuserdatauv(L, sizeof *p + req_len + 1, 0);
  p->fd = -1;
  luaL_setmetatable(L, PROBE_MT);
  p->closed = 0;
  p->phase = CONNECTING;
  p->got = p->sent = 0;
  p->req_len = req_len;
  snprintf(p->req, req_len + 1, REQUEST, path, where);
  memcpy(p->where, where, sizeof where);
  p->timeout_ms = timeout;
  p->deadline_ms = now_ms() + timeout;
  p->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) {
    int err = errno; /* before anything else may change it */
    return bg_sys_fail(L, err, lua_pushfstring(L, "socket for %s", where));
  }
  if (connect(p->fd, (struct sockaddr *)&sa, salen) == 0) p->phase = SENDING;
  else if (errno != EINPROGRESS && errno != EINTR) finish(p, 0, errno, "connect to");
  return 1;
}

static probe *checkprobe(lua_State *L) {
  probe *p = luaL_checkudata(L, 1, PROBE_MT);
  if (p->closed) luaL_error(L, "attempt to use a closed %s", PROBE_MT);
  return p;
}

/* probe:poll() -> "pending" | status | nil, msg, errname (ETIMEDOUT once
 * its deadline has passed without an answer) */
static int probe_poll(lua_State *L) {
  probe *p = checkprobe(L);
  if (p->phase != DONE) step(p);
  if (p->phase != DONE && now_ms() >= p->deadline_ms) {
    char why[64];
    snprintf(why, sizeof why, "no answer in %lld ms from", (long long)p->timeout_ms);
    finish(p, 0, ETIMEDOUT, why);
  }
  if (p->phase != DONE) lua_pushliteral(L, "pending");
  else if (p->err) return bg_sys_fail(L, p->err, p->why);
  else lua_pushinteger(L, p->status);
  return 1;
}

/* probe:close(), and __gc: safe twice, and on a probe whose socket was
 * never made. */
static int probe_gc(lua_State *L) {
  probe *p = luaL_checkudata(L, 1, PROBE_MT);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  return 0;
}

static int probe_close(lua_State *L) {
  probe_gc(L);
  ((probe *)lua_touserdata(L, 1))->closed = 1;
  return 0;
}

static const luaL_Reg probe_methods[] = {
    {"poll", probe_poll}, {"close", probe_close}, {NULL, NULL},
};

void bg_sys_open_http(lua_State *L) {
  luaL_newmetatable(L, PROBE_MT);
  lua_pushcfunction(L, probe_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, probe_close);
  lua_setfield(L, -2, "__close");
  luaL_newlib(L, probe_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
