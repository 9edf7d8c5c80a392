// The optional native addon: the few things Node cannot do by itself.
//  - mapFile(path): a read-only MAP_SHARED mapping of a page, as an ArrayBuffer (the probe: one load
//    per read instead of a pread);
//  - peerCred(fd): SO_PEERCRED of a connected Unix socket (verified pid, uid, gid of a watcher);
//  - watchFd(fd, callback): readiness of an arbitrary descriptor through libuv's own poll, so that
//    following /dev/kmsg or a vmclock device costs no thread-pool thread;
//  - ueventOpen() / ueventRecv(fd): the kernel's uevent netlink broadcast, with the sender's port;
//  - broadcast(fds, data, written): one message to many connected sockets in one call, the daemon's
//    hot loop when it notifies every watcher (a libuv stream write per socket costs several times more);
//  - sdNotify(path, message): one datagram to systemd's NOTIFY_SOCKET (Node has no datagram Unix
//    sockets), sent from the daemon's own pid so that NotifyAccess=main accepts it;
//  - unixListening(path): whether a socket listens at a path, by a synchronous connect() (Node's is
//    asynchronous only, and the probe's liveness check is synchronous);
//  - vsockListen / vsockAccept / vsockConnect and reseedKernel: the host channel (AF_VSOCK, and the
//    RNDADDENTROPY + RNDRESEEDCRNG ioctls that reseed the kernel's CRNG after a clone).
// Everything here has a pure-JS fallback (src/native/addon.ts); SYSGENID_NO_ADDON=1 forces it.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <uv.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return NULL;                                                            \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  const char *name = err == EACCES ? "EACCES" : err == ENOENT ? "ENOENT" : err == EPERM ? "EPERM"
                   : err == EINVAL ? "EINVAL" : err == ENODEV ? "ENODEV" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_throw(env, error);
  return NULL;
}

// The arguments of a call: `argc` and `argv[n]` in scope (argc may come back smaller).
#define ARGS(n)                                                                                    \
  size_t argc = (n);                                                                               \
  napi_value argv[(n)];                                                                            \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

// Declare `name` and read argument i into it (after ARGS): JS numbers as C integers, or a thrown TypeError.
#define INT32_ARG(i, name)                                                                         \
  int32_t name;                                                                                    \
  CHECK(napi_get_value_int32(env, argv[(i)], &name))
#define UINT32_ARG(i, name)                                                                        \
  uint32_t name;                                                                                   \
  CHECK(napi_get_value_uint32(env, argv[(i)], &name))

static napi_value int32_value(napi_env env, int32_t n) {
  napi_value v;
  CHECK(napi_create_int32(env, n, &v));
  return v;
}

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

// Map `length` bytes of `fd` read-only and shared, close `fd`, and hand the mapping to JS.
static napi_value map_fd(napi_env env, int fd, uint32_t length) {
  void *p = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", err);
  napi_value buf;
  if (napi_create_external_arraybuffer(env, p, length, unmap, (void *)(uintptr_t)length, &buf) != napi_ok) {
    munmap(p, length);
    return throw_errno(env, "external ArrayBuffer refused (V8 sandbox?)", ENOTSUP);
  }
  return buf;
}

// Open (path, length = 4096)'s path read-only and map `length` bytes of it. A regular file must hold them
// all (a read past its end would fault); a character device reports no size to check.
static napi_value map_path(napi_env env, napi_callback_info info, int check_size) {
  ARGS(2);
  char path[4096];
  size_t len = 0;
  CHECK(napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len));
  uint32_t length = 4096;
  if (argc > 1) CHECK(napi_get_value_uint32(env, argv[1], &length));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open", errno);
  struct stat st;
  if (check_size) {
    int err = fstat(fd, &st) < 0 ? errno : st.st_size < (off_t)length ? EINVAL : 0;
    if (err) {
      close(fd);
      return throw_errno(env, "page shorter than the mapping", err);
    }
  }
  return map_fd(env, fd, length);
}

// mapFile(path: string, length: number): ArrayBuffer (read-only: a JS write would fault)
static napi_value map_file(napi_env env, napi_callback_info info) {
  return map_path(env, info, 1);
}

// mapDevice(path, length): like mapFile, for a character device (st_size 0) such as /dev/vmclock0.
static napi_value map_device(napi_env env, napi_callback_info info) {
  return map_path(env, info, 0);
}

// peerCred(fd: number): { pid, uid, gid }
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  ARGS(1);
  INT32_ARG(0, fd);
  struct ucred cred;
  socklen_t sl = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl) < 0) return throw_errno(env, "SO_PEERCRED", errno);
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_int32(env, cred.pid, &v));
  CHECK(napi_set_named_property(env, obj, "pid", v));
  CHECK(napi_create_uint32(env, cred.uid, &v));
  CHECK(napi_set_named_property(env, obj, "uid", v));
  CHECK(napi_create_uint32(env, cred.gid, &v));
  CHECK(napi_set_named_property(env, obj, "gid", v));
  return obj;
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_ref self;      /* keeps the JS handle alive while the watch is active */
  int closed;         /* uv_close requested */
  int handle_gone;    /* libuv's close callback ran */
  int object_gone;    /* the JS handle object was collected */
} fd_watch;

// The struct is shared by libuv and by the JS handle object: freed when both are done with it.
static void on_closed(uv_handle_t *h) {
  fd_watch *w = h->data;
  w->handle_gone = 1;
  if (w->object_gone) free(w);
}

static void on_ready(uv_poll_t *p, int status, int events) {
  fd_watch *w = p->data;
  napi_handle_scope scope;
  napi_open_handle_scope(w->env, &scope);
  napi_value cb, global, args[2];
  napi_get_reference_value(w->env, w->callback, &cb);
  napi_get_global(w->env, &global);
  napi_create_int32(w->env, status, &args[0]);
  napi_create_int32(w->env, events, &args[1]);
  napi_value result;
  if (napi_call_function(w->env, global, cb, 2, args, &result) == napi_pending_exception) {
    napi_value ex;
    napi_get_and_clear_last_exception(w->env, &ex);
    napi_fatal_exception(w->env, ex);
  }
  napi_close_handle_scope(w->env, scope);
}

static void stop_watch(fd_watch *w) {
  if (w->closed) return;
  w->closed = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(w->env, w->callback);
  if (w->self) {
    napi_delete_reference(w->env, w->self);
    w->self = NULL;
  }
  w->poll.data = w;
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void on_object_gone(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  fd_watch *w = data;
  w->object_gone = 1;
  if (!w->closed) stop_watch(w);
  else if (w->handle_gone) free(w);
}

static napi_value watch_close(napi_env env, napi_callback_info info) {
  fd_watch *w;
  CHECK(napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&w));
  stop_watch(w);
  return NULL;
}

// watchFd(fd: number, events: number, callback(status, events)): { close() }. events: 1 readable,
// 2 writable, 4 disconnect, 8 priority (libuv's UV_READABLE...). The watch keeps the loop alive and
// stays active until close(), whether or not the returned object is kept.
static napi_value watch_fd(napi_env env, napi_callback_info info) {
  ARGS(3);
  INT32_ARG(0, fd);
  INT32_ARG(1, events);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  fd_watch *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watchFd", ENOMEM);
  w->env = env;
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc < 0) {
    free(w);
    return throw_errno(env, "uv_poll_init", -rc);
  }
  w->poll.data = w;
  napi_create_reference(env, argv[2], 1, &w->callback);
  rc = uv_poll_start(&w->poll, events, on_ready);
  if (rc < 0) {
    w->object_gone = 1;
    stop_watch(w);
    return throw_errno(env, "uv_poll_start", -rc);
  }
  napi_value handle, close_fn;
  CHECK(napi_create_object(env, &handle));
  CHECK(napi_add_finalizer(env, handle, w, on_object_gone, NULL, NULL));
  CHECK(napi_create_function(env, "close", NAPI_AUTO_LENGTH, watch_close, w, &close_fn));
  CHECK(napi_set_named_property(env, handle, "close", close_fn));
  // An active watch lives until close(), like Node's own handles: dropping the returned object must
  // not silently stop the callbacks (it did, at the first garbage collection).
  CHECK(napi_create_reference(env, handle, 1, &w->self));
  return handle;
}

// ueventOpen(): fd of a non-blocking NETLINK_KOBJECT_UEVENT socket bound to the kernel's group.
static napi_value uevent_open(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (fd < 0) return throw_errno(env, "netlink socket", errno);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = 1};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "netlink bind", err);
  }
  int size = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return int32_value(env, fd);
}

// ueventRecv(fd): { pid, fields: string[] } for one message, or null when none is queued. `pid` is
// the sender's netlink port: 0 only for the kernel.
static napi_value uevent_recv(napi_env env, napi_callback_info info) {
  ARGS(1);
  INT32_ARG(0, fd);
  char buf[8192];
  struct sockaddr_nl from;
  socklen_t fl = sizeof from;
  ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
  napi_value result;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      CHECK(napi_get_null(env, &result));
      return result;
    }
    return throw_errno(env, "netlink recv", errno);
  }
  buf[n] = 0;
  napi_value fields, v;
  CHECK(napi_create_array(env, &fields));
  uint32_t count = 0;
  for (ssize_t i = 0; i < n;) {
    size_t len = strnlen(buf + i, (size_t)(n - i));
    CHECK(napi_create_string_utf8(env, buf + i, len, &v));
    CHECK(napi_set_element(env, fields, count++, v));
    i += (ssize_t)len + 1;
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_uint32(env, from.nl_pid, &v));
  CHECK(napi_set_named_property(env, result, "pid", v));
  CHECK(napi_set_named_property(env, result, "fields", fields));
  return result;
}

// broadcast(fds: Int32Array, data: Buffer, written: Int32Array): number. Sends `data` to each socket
// without blocking and stores per socket the bytes sent, or -errno. Returns how many sockets did not
// take the whole message; the caller queues the rest through the socket's own stream (which it must
// only bypass when that stream has nothing pending, or the order of bytes would change).
static napi_value broadcast(napi_env env, napi_callback_info info) {
  ARGS(3);
  napi_typedarray_type t1, t3;
  size_t nfds, nwritten, len;
  void *fdp, *wp, *data;
  CHECK(napi_get_typedarray_info(env, argv[0], &t1, &nfds, &fdp, NULL, NULL));
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  CHECK(napi_get_typedarray_info(env, argv[2], &t3, &nwritten, &wp, NULL, NULL));
  if (t1 != napi_int32_array || t3 != napi_int32_array || nwritten < nfds) {
    napi_throw_type_error(env, NULL, "broadcast(fds: Int32Array, data: Buffer, written: Int32Array of at least fds.length)");
    return NULL;
  }
  const int32_t *fds = fdp;
  int32_t *written = wp;
  uint32_t incomplete = 0;
  for (size_t i = 0; i < nfds; i++) {
    ssize_t n;
    do {
      n = send(fds[i], data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    written[i] = n < 0 ? -errno : (int32_t)n;
    if (n != (ssize_t)len) incomplete++;
  }
  napi_value v;
  CHECK(napi_create_uint32(env, incomplete, &v));
  return v;
}

// --- Process and lock control (issue 12): flock, the child subreaper, reaping one pid. ---
// Node has no flock(2): the daemon's exclusive lock on its pid file is released by the kernel when
// the daemon dies, however it dies. PR_SET_CHILD_SUBREAPER makes the daemon the parent of whatever a
// hook leaves behind (double fork + setsid included), so it can kill it; reapPid waits for one such
// orphan only: a waitpid(-1) would steal the exit status of libuv's own children.
#include <stdbool.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>

// flock(fd, op): 0, or -errno (EWOULDBLOCK when LOCK_NB and someone else holds it)
static napi_value flock_fd(napi_env env, napi_callback_info info) {
  ARGS(2);
  INT32_ARG(0, fd);
  INT32_ARG(1, op);
  int rc;
  do {
    rc = flock(fd, op);
  } while (rc < 0 && errno == EINTR);
  return int32_value(env, rc < 0 ? -errno : 0);
}

// setChildSubreaper(on: boolean): 0 or -errno
static napi_value set_child_subreaper(napi_env env, napi_callback_info info) {
  ARGS(1);
  bool on = true;
  if (argc > 0) CHECK(napi_get_value_bool(env, argv[0], &on));
  int rc = prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0);
  return int32_value(env, rc < 0 ? -errno : 0);
}

// reapPid(pid): the pid if it was reaped, 0 if it still runs, -errno (ECHILD: not our child)
static napi_value reap_pid(napi_env env, napi_callback_info info) {
  ARGS(1);
  INT32_ARG(0, pid);
  int rc;
  if (pid <= 0) {
    rc = -EINVAL;
  } else {
    int status;
    do {
      rc = waitpid(pid, &status, WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) rc = -errno;
  }
  return int32_value(env, rc);
}
// --- end of process and lock control ---

// The string `v` as an AF_UNIX address, or -errno: never a truncated path, which would name another socket.
static int unix_address(napi_env env, napi_value v, struct sockaddr_un *addr, size_t *plen) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (napi_get_value_string_utf8(env, v, NULL, 0, plen) != napi_ok) return -EINVAL;
  if (*plen == 0 || *plen >= sizeof addr->sun_path) return -ENAMETOOLONG;
  if (napi_get_value_string_utf8(env, v, addr->sun_path, sizeof addr->sun_path, plen) != napi_ok) return -EINVAL;
  return 0;
}

// sdNotify(path, message): 0 or -errno. `path` is NOTIFY_SOCKET as systemd sets it: a file path, or an
// abstract name written with a leading '@'.
static napi_value sd_notify(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct sockaddr_un addr;
  size_t plen = 0;
  int bad = unix_address(env, argv[0], &addr, &plen);
  size_t mlen = 0;
  CHECK(napi_get_value_string_utf8(env, argv[1], NULL, 0, &mlen));
  char *msg = malloc(mlen + 1);
  if (msg == NULL) return throw_errno(env, "sdNotify", ENOMEM);
  napi_status st = napi_get_value_string_utf8(env, argv[1], msg, mlen + 1, &mlen);
  int rc = 0;
  if (st != napi_ok || bad || plen >= sizeof addr.sun_path - 1) {
    rc = -EINVAL;
  } else {
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (addr.sun_path[0] ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      rc = -errno;
    } else {
      ssize_t n;
      do {
        n = sendto(fd, msg, mlen, MSG_NOSIGNAL, (struct sockaddr *)&addr, alen);
      } while (n < 0 && errno == EINTR);
      if (n < 0) rc = -errno;
      close(fd);
    }
  }
  free(msg);
  return int32_value(env, rc);
}
// unixListening(path): 0 when a stream socket listens at this path (a non-blocking connect() went
// through, or found the listener's backlog full), else -errno: -ECONNREFUSED for a socket file nobody
// listens on, -ENOENT, -EACCES, -ENAMETOOLONG. The liveness check (src/protocol/liveness.ts) asks the
// kernel this way because /proc/net/unix can be forged: a socket name may contain a newline.
static napi_value unix_listening(napi_env env, napi_callback_info info) {
  ARGS(1);
  struct sockaddr_un addr;
  size_t plen = 0;
  int bad = unix_address(env, argv[0], &addr, &plen);
  if (bad) return int32_value(env, bad);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return int32_value(env, -errno);
  int rc;
  do {
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  } while (rc < 0 && errno == EINTR);
  int32_t result = rc == 0 || errno == EAGAIN ? 0 : -errno;
  close(fd);
  return int32_value(env, result);
}

// ---------------------------------------------------------------- register: reseed OpenSSL in this process
// src/client/register.ts calls these on every new generation. OpenSSL's DRBGs notice a fork through
// getpid() only, so a VM clone or a CRIU copy of this process continues the very same stream. Node
// exports OpenSSL's symbols from its own binary (found through the global scope); a Node built against
// the system libcrypto.so.3 (or an addon that loaded it) has a second copy, found with RTLD_NOLOAD so
// that nothing is loaded that was not there. Each copy gets RAND_poll(), then its primary DRBG is
// reseeded from the kernel explicitly (RAND_poll() is a no-op for the default method in some 3.0
// releases); the per-thread public and private DRBGs of every thread compare their parent's reseed
// counter on their next use and reseed from it then; the calling thread's are reseeded at once.

#include <dlfcn.h>

// OSSL_PARAM, as in <openssl/core.h> (a stable ABI): declared here because nothing is linked against.
typedef struct {
  const char *key;
  unsigned int data_type;
  void *data;
  size_t data_size;
  size_t return_size;
} reg_ossl_param;

typedef struct {
  int (*rand_poll)(void);
  void *(*get0_primary)(void *);
  void *(*get0_public)(void *);
  void *(*get0_private)(void *);
  int (*reseed)(void *, int, const unsigned char *, size_t, const unsigned char *, size_t);
  int (*get_params)(void *, reg_ossl_param *);
  const char *(*version)(int);
  const char *file;
} reg_crypto;

static int reg_resolve(void *handle, reg_crypto *c) {
  memset(c, 0, sizeof *c);
  *(void **)&c->rand_poll = dlsym(handle, "RAND_poll");
  *(void **)&c->get0_primary = dlsym(handle, "RAND_get0_primary");
  *(void **)&c->get0_public = dlsym(handle, "RAND_get0_public");
  *(void **)&c->get0_private = dlsym(handle, "RAND_get0_private");
  *(void **)&c->reseed = dlsym(handle, "EVP_RAND_reseed");
  *(void **)&c->get_params = dlsym(handle, "EVP_RAND_CTX_get_params");
  *(void **)&c->version = dlsym(handle, "OpenSSL_version");
  if (!c->rand_poll || !c->get0_primary || !c->reseed) return 0;
  Dl_info info;
  c->file = dladdr(*(void **)&c->rand_poll, &info) && info.dli_fname ? info.dli_fname : "?";
  return 1;
}

/** Up to two distinct copies of OpenSSL in this process: the global scope's and libcrypto.so.3's. */
static int reg_find(reg_crypto found[2]) {
  int n = 0;
  if (reg_resolve(RTLD_DEFAULT, &found[n])) n++;
  void *sys = dlopen("libcrypto.so.3", RTLD_LAZY | RTLD_NOLOAD);
  if (sys) {
    reg_crypto c;
    if (reg_resolve(sys, &c) && (n == 0 || c.rand_poll != found[0].rand_poll)) found[n++] = c;
    // RTLD_NOLOAD still takes a reference; the library stays loaded by whoever loaded it.
    dlclose(sys);
  }
  return n;
}

static int64_t reg_counter(const reg_crypto *c, void *drbg) {
  if (!c->get_params || !drbg) return -1;
  unsigned int v = 0;
  reg_ossl_param p[2] = {
    {"reseed_counter", 2 /* OSSL_PARAM_UNSIGNED_INTEGER */, &v, sizeof v, 0},
    {NULL, 0, NULL, 0, 0},
  };
  return c->get_params(drbg, p) == 1 ? (int64_t)v : -1;
}

static napi_status reg_set_num(napi_env env, napi_value obj, const char *key, double num) {
  napi_value v;
  napi_status s = napi_create_double(env, num, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

static napi_status reg_set_str(napi_env env, napi_value obj, const char *key, const char *str) {
  napi_value v;
  napi_status s = napi_create_string_utf8(env, str ? str : "", NAPI_AUTO_LENGTH, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

static napi_status reg_set_bool(napi_env env, napi_value obj, const char *key, int b) {
  napi_value v;
  napi_status s = napi_get_boolean(env, b != 0, &v);
  return s == napi_ok ? napi_set_named_property(env, obj, key, v) : s;
}

// Both opensslReseed() and opensslState(): one object per copy of OpenSSL found.
static napi_value reg_run(napi_env env, int do_reseed) {
  reg_crypto found[2];
  int n = reg_find(found);
  napi_value list;
  CHECK(napi_create_array_with_length(env, (size_t)n, &list));
  for (int i = 0; i < n; i++) {
    reg_crypto *c = &found[i];
    void *primary = c->get0_primary(NULL);
    int64_t before = reg_counter(c, primary);
    int poll = -1, prim = -1, pub = -1, priv = -1;
    if (do_reseed) {
      poll = c->rand_poll();
      // Prediction resistance: fresh entropy from the seed source (the kernel), never from a cloned parent.
      prim = primary ? c->reseed(primary, 1, NULL, 0, NULL, 0) : 0;
      if (prim != 1 && primary) prim = c->reseed(primary, 0, NULL, 0, NULL, 0);
      void *p = c->get0_public ? c->get0_public(NULL) : NULL;
      void *q = c->get0_private ? c->get0_private(NULL) : NULL;
      pub = p ? c->reseed(p, 0, NULL, 0, NULL, 0) : 0;
      priv = q ? c->reseed(q, 0, NULL, 0, NULL, 0) : 0;
    }
    napi_value o;
    CHECK(napi_create_object(env, &o));
    CHECK(reg_set_str(env, o, "library", c->file));
    CHECK(reg_set_str(env, o, "version", c->version ? c->version(0) : "?"));
    CHECK(reg_set_num(env, o, "primaryReseedCounter", (double)reg_counter(c, primary)));
    if (do_reseed) {
      CHECK(reg_set_num(env, o, "primaryReseedCounterBefore", (double)before));
      CHECK(reg_set_bool(env, o, "poll", poll == 1));
      CHECK(reg_set_bool(env, o, "primary", prim == 1));
      CHECK(reg_set_bool(env, o, "public", pub == 1));
      CHECK(reg_set_bool(env, o, "private", priv == 1));
      // The primary is what matters: every thread's public and private DRBGs reseed from it at their next
      // use because its reseed counter moved. The calling thread's are reseeded now as well.
      CHECK(reg_set_bool(env, o, "ok", prim == 1));
    }
    CHECK(napi_set_element(env, list, (uint32_t)i, o));
  }
  return list;
}

// opensslReseed(): [{ library, version, ok, poll, primary, public, private, primaryReseedCounter(Before) }]
static napi_value openssl_reseed(napi_env env, napi_callback_info info) {
  (void)info;
  return reg_run(env, 1);
}

// opensslState(): [{ library, version, primaryReseedCounter }] without reseeding anything.
static napi_value openssl_state(napi_env env, napi_callback_info info) {
  (void)info;
  return reg_run(env, 0);
}

// ---------------------------------------------------------------- end of register

// --- the host channel: vsock sockets and the kernel pool reseed (src/daemon/backends/host.ts, sysgenid host) ---
// Node has no AF_VSOCK sockets and no ioctls. The daemon listens for the hypervisor host on a vsock port
// and accepts only its CID; the host command connects to a guest's CID. Reads and writes of the connected
// descriptors go through fs.readSync/writeSync, their readiness through watchFd.

#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>

// vsockListen(port: number): fd of a non-blocking AF_VSOCK stream socket listening on (any CID, port).
static napi_value vsock_listen(napi_env env, napi_callback_info info) {
  ARGS(1);
  UINT32_ARG(0, port);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "vsock socket", errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "vsock bind/listen", err);
  }
  return int32_value(env, fd);
}

// vsockAccept(fd): { fd, cid, port } of one pending connection (non-blocking, close-on-exec), or null when
// none is pending. `cid` is the peer's context id, -1 when the listening socket is not AF_VSOCK (tests
// hand it a Unix socket); the caller decides whom to keep.
static napi_value vsock_accept(napi_env env, napi_callback_info info) {
  ARGS(1);
  INT32_ARG(0, lfd);
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  int fd;
  do {
    fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  napi_value result, v;
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
      CHECK(napi_get_null(env, &result));
      return result;
    }
    return throw_errno(env, "vsock accept", errno);
  }
  int64_t cid = -1, port = -1;
  if (peer.ss_family == AF_VSOCK) {
    struct sockaddr_vm *vm = (struct sockaddr_vm *)&peer;
    cid = vm->svm_cid;
    port = vm->svm_port;
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &v));
  CHECK(napi_set_named_property(env, result, "fd", v));
  CHECK(napi_create_int64(env, cid, &v));
  CHECK(napi_set_named_property(env, result, "cid", v));
  CHECK(napi_create_int64(env, port, &v));
  CHECK(napi_set_named_property(env, result, "port", v));
  return result;
}

// vsockConnect(cid, port): fd of a connected AF_VSOCK stream socket (blocking connect, then non-blocking).
static napi_value vsock_connect(napi_env env, napi_callback_info info) {
  ARGS(2);
  UINT32_ARG(0, cid);
  UINT32_ARG(1, port);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "vsock socket", errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid};
  int rc;
  do {
    rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "vsock connect", err);
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  return int32_value(env, fd);
}

// reseedKernel(entropy: Buffer): 0 or -errno. Adds the bytes to the kernel's input pool with
// RNDADDENTROPY (crediting 8 bits a byte: they come from the host's RNG) and forces the CRNG to reseed
// from it with RNDRESEEDCRNG; writing to /dev/urandom would mix them in but not reseed. Both need
// CAP_SYS_ADMIN. Returns the first failure: -errno of RNDADDENTROPY, or -(1000 + errno) of RNDRESEEDCRNG
// so that the caller can say which step failed.
static napi_value reseed_kernel(napi_env env, napi_callback_info info) {
  ARGS(1);
  void *data;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], &data, &len));
  int32_t rc = 0;
  if (len == 0 || len > 4096) rc = -EINVAL;
  int fd = rc ? -1 : open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (!rc && fd < 0) rc = -errno;
  if (!rc) {
    struct rand_pool_info *pool = calloc(1, sizeof *pool + ((len + 3) & ~(size_t)3));
    if (!pool) {
      rc = -ENOMEM;
    } else {
      pool->entropy_count = (int)(len * 8);
      pool->buf_size = (int)len;
      memcpy(pool->buf, data, len);
      if (ioctl(fd, RNDADDENTROPY, pool) < 0) rc = -errno;
      else if (ioctl(fd, RNDRESEEDCRNG) < 0) rc = -(1000 + errno);
      // The host's bytes are a secret of this guest: do not leave them in freed memory.
      memset(pool->buf, 0, len);
      free(pool);
    }
  }
  if (fd >= 0) close(fd);
  return int32_value(env, rc);
}
// --- end of the host channel ---

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"mapFile", NULL, map_file, NULL, NULL, NULL, napi_default, NULL},
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
    {"watchFd", NULL, watch_fd, NULL, NULL, NULL, napi_default, NULL},
    {"broadcast", NULL, broadcast, NULL, NULL, NULL, napi_default, NULL},
    {"ueventOpen", NULL, uevent_open, NULL, NULL, NULL, napi_default, NULL},
    {"ueventRecv", NULL, uevent_recv, NULL, NULL, NULL, napi_default, NULL},
    {"flock", NULL, flock_fd, NULL, NULL, NULL, napi_default, NULL},
    {"setChildSubreaper", NULL, set_child_subreaper, NULL, NULL, NULL, napi_default, NULL},
    {"reapPid", NULL, reap_pid, NULL, NULL, NULL, napi_default, NULL},
    {"sdNotify", NULL, sd_notify, NULL, NULL, NULL, napi_default, NULL},
    {"unixListening", NULL, unix_listening, NULL, NULL, NULL, napi_default, NULL},
    {"opensslReseed", NULL, openssl_reseed, NULL, NULL, NULL, napi_default, NULL},
    {"opensslState", NULL, openssl_state, NULL, NULL, NULL, napi_default, NULL},
    {"mapDevice", NULL, map_device, NULL, NULL, NULL, napi_default, NULL},
    {"vsockListen", NULL, vsock_listen, NULL, NULL, NULL, napi_default, NULL},
    {"vsockAccept", NULL, vsock_accept, NULL, NULL, NULL, napi_default, NULL},
    {"vsockConnect", NULL, vsock_connect, NULL, NULL, NULL, napi_default, NULL},
    {"reseedKernel", NULL, reseed_kernel, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
