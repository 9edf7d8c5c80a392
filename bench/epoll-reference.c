// The C epoll reference for `npm run bench`: a minimal server speaking the same exchange as sysgenidd
// (HELLO on connect, BUMP on the control socket, GEN to every watcher, ACK, OBSERVE, WAIT, STATUS BRIEF),
// single-threaded, level-triggered epoll, no bounds and no persistence. It exists only to be measured
// against; it is built by the benchmark itself (cc -O2).
//
//   epoll-reference DIR   (listens on DIR/watch.sock and DIR/control.sock)

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXC 65536

typedef struct {
  int used, watcher, control;
  unsigned acked;
  int waiting;
  char buf[512];
  size_t len;
} conn_t;

static conn_t *conns;
static unsigned gen, nwatchers, outdated;
static int ep, lw, lc;

static void say(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return; /* a reference server: a full buffer drops the line */
    }
    s += w;
    n -= (size_t)w;
  }
}

static void release_waiters(void) {
  if (outdated != 0) return;
  for (int fd = 0; fd < MAXC; fd++)
    if (conns[fd].used && conns[fd].waiting) {
      conns[fd].waiting = 0;
      say(fd, "OK\n");
    }
}

static int listen_on(const char *dir, const char *name) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
  unlink(a.sun_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
    perror(a.sun_path);
    exit(1);
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return fd;
}

static void drop(int fd) {
  conn_t *c = &conns[fd];
  if (c->watcher) {
    nwatchers--;
    if (c->acked != gen) outdated--;
  }
  memset(c, 0, sizeof *c);
  close(fd);
  release_waiters();
}

static void line(int fd, char *l) {
  conn_t *c = &conns[fd];
  char out[64];
  if (strcmp(l, "BUMP") == 0 || strncmp(l, "BUMP ", 5) == 0) {
    if (!c->control) { say(fd, "ERR EACCES control socket only\n"); return; }
    gen++;
    outdated = nwatchers;
    snprintf(out, sizeof out, "GEN %u\n", gen);
    for (int i = 0; i < MAXC; i++) {
      if (conns[i].used && conns[i].waiting && conns[i].acked != gen) {
        conns[i].waiting = 0;
        say(i, "ERR EINTR\n");
      }
      if (conns[i].used && conns[i].watcher) say(i, out);
    }
    snprintf(out, sizeof out, "OK %u\n", gen);
    say(fd, out);
  } else if (strncmp(l, "ACK ", 4) == 0) {
    unsigned v = (unsigned)strtoul(l + 4, NULL, 10);
    if (v != gen) { say(fd, "ERR EINVAL\n"); return; }
    if (c->acked != gen) {
      c->acked = gen;
      if (c->watcher) outdated--;
    }
    snprintf(out, sizeof out, "OK %u\n", gen);
    say(fd, out);
    release_waiters();
  } else if (strcmp(l, "OBSERVE") == 0) {
    if (c->watcher) {
      c->watcher = 0;
      nwatchers--;
      if (c->acked != gen) outdated--;
    }
    say(fd, "OK\n");
    release_waiters();
  } else if (strncmp(l, "WAIT", 4) == 0) {
    if (c->acked != gen) say(fd, "ERR EINTR\n");
    else if (outdated == 0) say(fd, "OK\n");
    else c->waiting = 1;
  } else if (strncmp(l, "STATUS", 6) == 0) {
    char s[160];
    snprintf(s, sizeof s, "OK {\"generation\":%u,\"watchers\":%u,\"outdated\":%u,\"memory\":{\"rss\":0,\"heapUsed\":0}}\n", gen, nwatchers, outdated);
    say(fd, s);
  } else {
    say(fd, "ERR ENOSYS\n");
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  conns = calloc(MAXC, sizeof *conns);
  ep = epoll_create1(EPOLL_CLOEXEC);
  lw = listen_on(argv[1], "watch.sock");
  lc = listen_on(argv[1], "control.sock");
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lw || fd == lc) {
        for (;;) {
          int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          if (c >= MAXC) { close(c); continue; }
          conn_t *cc = &conns[c];
          memset(cc, 0, sizeof *cc);
          cc->used = 1;
          cc->acked = gen;
          cc->control = fd == lc;
          cc->watcher = fd == lw;
          if (cc->watcher) nwatchers++;
          struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
          char hello[64];
          snprintf(hello, sizeof hello, "HELLO sysgenid/1 %u %d\n", gen, c);
          say(c, hello);
        }
        continue;
      }
      conn_t *c = &conns[fd];
      ssize_t r = read(fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(fd);
        continue;
      }
      c->len += (size_t)r;
      char *start = c->buf, *nl;
      while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf))) != NULL) {
        *nl = 0;
        line(fd, start);
        if (!conns[fd].used) break;
        start = nl + 1;
      }
      if (!conns[fd].used) continue;
      c->len -= (size_t)(start - c->buf);
      memmove(c->buf, start, c->len);
      if (c->len >= sizeof c->buf - 1) c->len = 0;
    }
  }
}
