// A minimal receiving client for the "all notified" measurements, in C so that the client's own
// runtime is out of the comparison: the same program reads the daemon's watch sockets and the kernel's
// netlink uevent sockets. It opens COUNT sockets, prints "ready", then, each time every socket has
// received one more message, prints "notified". It never answers (nothing is acknowledged).
//
//   reader-client unix PATH COUNT     watcher connections to a sysgenid watch socket (GEN lines)
//   reader-client netlink COUNT       NETLINK_KOBJECT_UEVENT sockets (uevents carrying MARKER)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MARKER "SYNTH_ARG_SYSGENIDBENCH=1"

static int open_unix(const char *path) {
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
      // The greeting, read blocking, before the socket goes non-blocking.
      char c;
      while (read(fd, &c, 1) == 1 && c != '\n') {
      }
      fcntl(fd, F_SETFL, O_NONBLOCK);
      return fd;
    }
    int err = errno;
    close(fd);
    if (err != EAGAIN) return -1;
    usleep(1000); /* a full accept queue */
  }
}

static int open_netlink(void) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) return -1;
  struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = 1};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
  return fd;
}

/* How many messages of this round arrived in buf (GEN lines, or one uevent with the marker). */
static int count(int netlink, const char *buf, ssize_t n) {
  if (netlink) {
    for (ssize_t i = 0; i < n;) {
      if (strcmp(buf + i, MARKER) == 0) return 1;
      i += (ssize_t)strnlen(buf + i, (size_t)(n - i)) + 1;
    }
    return 0;
  }
  int k = 0;
  for (ssize_t i = 0; i < n; i++) if (buf[i] == '\n') k++;
  return k;
}

int main(int argc, char **argv) {
  int netlink = argc == 3 && strcmp(argv[1], "netlink") == 0;
  if (!netlink && !(argc == 4 && strcmp(argv[1], "unix") == 0)) {
    fprintf(stderr, "usage: reader-client unix PATH COUNT | reader-client netlink COUNT\n");
    return 2;
  }
  int n = atoi(argv[netlink ? 2 : 3]);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int *seen = calloc((size_t)n, sizeof *seen);
  for (int i = 0; i < n; i++) {
    int fd = netlink ? open_netlink() : open_unix(argv[2]);
    if (fd < 0) {
      perror("reader-client: socket");
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)(uint32_t)i << 32) | (uint32_t)fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  printf("ready\n");
  fflush(stdout);
  int round = 0, done = 0;
  struct epoll_event evs[256];
  char buf[8192];
  for (;;) {
    int k = epoll_wait(ep, evs, 256, -1);
    for (int e = 0; e < k; e++) {
      int i = (int)(evs[e].data.u64 >> 32), fd = (int)(uint32_t)evs[e].data.u64;
      for (;;) {
        ssize_t r = netlink ? recv(fd, buf, sizeof buf - 1, 0) : read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          if (r == 0) return 0; /* the server went away */
          break;
        }
        if (netlink) buf[r] = 0;
        int before = seen[i];
        seen[i] += count(netlink, buf, r);
        if (before <= round && seen[i] > round && ++done == n) {
          done = 0;
          round++;
          printf("notified\n");
          fflush(stdout);
        }
      }
    }
  }
}
