/* server.c: authd's Unix socket: listening, connections, peers and roles, framing.
 *
 * The socket is bound under umask 0117, so it is 0660 from the moment it exists, or taken from
 * systemd (fd 3). Each accepted peer is checked once with SO_PEERCRED: its uid (and that uid's
 * groups) decide its roles (docs/ipc.md, "Roles"), and each uid may hold a limited number of
 * connections. A connection reads into an ipc_reader and queues its replies as frames, each in a
 * buffer of its own that is wiped once written; EPOLLOUT is on while the queue is not empty.
 * A frame left half-sent, or output the peer does not read, for 30 seconds closes the connection.
 * A framing error queues one failed reply with id 0 and closes the connection once it is flushed.
 *
 * Connections are freed only from their own io or timer callbacks (or at shutdown), never from
 * inside the dispatcher or a credential-manager callback: those mark the connection closing and
 * let the io callback finish the job. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "authd.h"
#include "conf.h"
#include "config.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define OUT_MAX (8u * 1024 * 1024)          /* a connection's queue; past it, the peer is dropped */
#define OUT_PAUSE (1u * 1024 * 1024)        /* stop reading requests while this much waits */
#define CLOSE_GRACE_USEC (5 * USEC_PER_SEC) /* to flush a final error before closing */
#define ACCEPT_PAUSE_USEC (1 * USEC_PER_SEC)

struct authd_frame {
    struct authd_frame *next;
    struct buf b;
    size_t off; /* bytes of b already written */
};

static struct authd_frame *frame_free(struct authd_frame *f)
{
    if (f) {
        buf_free(&f->b, true);
        free(f);
    }
    return NULL;
}

static void conn_update(struct authd_conn *c);

static struct authd_conn *conn_free(struct authd_conn *c)
{
    struct authd *a;

    if (!c)
        return NULL;
    a = c->authd;
    authd_ops_cancel_pending(c);
    json_decref(c->snap_members);
    c->snap_members = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->n_conns--;
    c->io = sd_event_source_disable_unref(c->io);
    c->timer = sd_event_source_disable_unref(c->timer);
    safe_close(c->fd);
    ipc_reader_done(&c->reader);
    while (c->out_head) {
        struct authd_frame *f = c->out_head;
        c->out_head = f->next;
        frame_free(f);
    }
    log_debug("Connection %" PRIu64 " closed.", c->number);
    free(c);
    return NULL;
}

static void conn_close_after_flush(struct authd_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->closing_since = now_usec();
    conn_update(c);
}

/* The id of a message whose envelope is wrong, when it has a usable one, else 0. */
static uint64_t usable_id(const json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    json_int_t v;

    if (!json_is_integer(id))
        return 0;
    v = json_integer_value(id);
    if (v < 1 || (uint64_t)v > IPC_ID_MAX)
        return 0;
    return (uint64_t)v;
}

int authd_conn_send(struct authd_conn *c, json_t *msg)
{
    json_auto_t *m = msg;
    struct authd_frame *f;
    int r;

    if (!m)
        return -ENOMEM;
    if (c->closing)
        return 0; /* a connection error went out already; nothing follows it */

    f = calloc(1, sizeof *f);
    if (!f)
        return log_oom();
    f->b = BUF_INIT(IPC_HEADER_SIZE + IPC_FRAME_MAX);
    r = ipc_frame_encode(m, &f->b);
    if (r == -EMSGSIZE && json_object_get(m, "id")) {
        json_int_t id = json_integer_value(json_object_get(m, "id"));

        json_decref(m);
        m = ipc_reply_error((uint64_t)id, IPC_ERROR_TOO_LARGE,
                            "The reply would not fit in one frame");
        r = m ? ipc_frame_encode(m, &f->b) : -ENOMEM;
    }
    if (r < 0) {
        frame_free(f);
        return log_warning_errno(r, "Connection %" PRIu64 ": dropping a message: %m", c->number);
    }
    if (c->out_bytes + f->b.len > OUT_MAX) {
        frame_free(f);
        log_warning("Connection %" PRIu64 " does not read its replies (%zu bytes queued); "
                    "closing it.",
                    c->number, c->out_bytes);
        c->closing = true;
        c->closing_since = now_usec();
        conn_update(c);
        return -ENOBUFS;
    }
    if (c->out_tail)
        c->out_tail->next = f;
    else
        c->out_head = f;
    c->out_tail = f;
    c->out_bytes += f->b.len;
    conn_update(c);
    return 0;
}

int authd_conn_reply_error(struct authd_conn *c, uint64_t id, const char *code, const char *fmt,
                           ...)
{
    char text[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return authd_conn_send(c, ipc_reply_error(id, code, text));
}

/* A connection error: one failed reply with id 0, then close once it is written. */
static void conn_fail(struct authd_conn *c, const char *code, const char *text)
{
    log_info("Connection %" PRIu64 " (uid %u): connection error '%s', closing it.", c->number,
             (unsigned)c->uid, code);
    (void)authd_conn_send(c, ipc_reply_error(0, code, text));
    conn_close_after_flush(c);
}

static void conn_dispatch(struct authd_conn *c, json_t *msg)
{
    struct parse_error err = {};
    struct ipc_header h = {};
    uint64_t id;
    int r;

    r = ipc_message_check(msg, &h, &err);
    if (r == -EPROTO) {
        conn_fail(c, IPC_ERROR_UNSUPPORTED_VERSION, err.text);
        return;
    }
    if (r < 0 || h.kind != IPC_REQUEST) {
        id = usable_id(msg);
        if (id == 0) {
            conn_fail(c, IPC_ERROR_BAD_REQUEST, r < 0 ? err.text : "authd accepts requests only");
            return;
        }
        (void)authd_conn_reply_error(c, id, IPC_ERROR_BAD_REQUEST, "%s",
                                     r < 0 ? err.text : "authd accepts requests only");
        return;
    }
    if (c->n_pending >= AUTHD_MAX_OUTSTANDING) {
        (void)authd_conn_reply_error(c, h.id, IPC_ERROR_BUSY,
                                     "Too many outstanding requests on this connection (%d)",
                                     AUTHD_MAX_OUTSTANDING);
        return;
    }
    authd_ops_dispatch(c, &h, msg);
    authd_announce_generation(c->authd);
}

/* jansson's error texts quote the input near the fault ("... near 'xyz'"); the peer's own bytes
 * could be a secret, so they are cut before the text goes anywhere. */
static void strip_near(char *text)
{
    char *p = strstr(text, " near '");

    if (p)
        *p = '\0';
}

void authd_conn_feed(struct authd_conn *c, const void *p, size_t n)
{
    struct parse_error err = {};
    json_t *msg;
    int r;

    r = ipc_reader_feed(&c->reader, p, n);
    while (r >= 0 && !c->closing) {
        r = ipc_reader_next(&c->reader, &msg, &err);
        if (r <= 0)
            break;
        conn_dispatch(c, msg);
        json_decref(msg);
    }
    if (r < 0 && !c->closing) {
        strip_near(err.text);
        conn_fail(c, ipc_error_code_from_errno(r),
                  err.text[0] ? err.text : "The connection's input could not be decoded");
    }
    if (c->reader.error == 0 && c->reader.buf.len > c->reader.start) {
        if (c->partial_since == 0)
            c->partial_since = now_usec();
    } else
        c->partial_since = 0;
}

/* Returns false when the connection is dead (to be freed). */
static bool conn_read(struct authd_conn *c)
{
    char tmp[16384];

    for (int round = 0; round < 8 && !c->closing && c->out_bytes <= OUT_PAUSE; round++) {
        size_t room = ipc_reader_room(&c->reader);
        ssize_t n;

        if (room == 0)
            break;
        n = read(c->fd, tmp, MIN(sizeof tmp, room));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            log_debug_errno(-errno, "Connection %" PRIu64 ": read failed: %m", c->number);
            return false;
        }
        if (n == 0) {
            /* The peer is done sending; what is queued still goes out. */
            conn_close_after_flush(c);
            break;
        }
        authd_conn_feed(c, tmp, (size_t)n);
        explicit_bzero(tmp, (size_t)n);
    }
    return true;
}

static bool conn_write(struct authd_conn *c)
{
    bool progress = false;

    while (c->out_head) {
        struct authd_frame *f = c->out_head;
        ssize_t n = send(c->fd, f->b.data + f->off, f->b.len - f->off, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            log_debug_errno(-errno, "Connection %" PRIu64 ": write failed: %m", c->number);
            return false;
        }
        progress = true;
        f->off += (size_t)n;
        c->out_bytes -= (size_t)n;
        if (f->off == f->b.len) {
            c->out_head = f->next;
            if (!c->out_head)
                c->out_tail = NULL;
            frame_free(f);
        }
    }
    if (!c->out_head)
        c->stalled_since = 0;
    else if (progress || c->stalled_since == 0)
        c->stalled_since = now_usec();
    return true;
}

static void conn_update(struct authd_conn *c)
{
    uint32_t events = 0;
    uint64_t deadline = UINT64_MAX;

    if (!c->closing && c->out_bytes <= OUT_PAUSE)
        events |= EPOLLIN;
    if (c->out_head || c->closing)
        events |= EPOLLOUT;
    if (c->io)
        (void)sd_event_source_set_io_events(c->io, events);

    if (c->out_head && c->stalled_since == 0)
        c->stalled_since = now_usec();
    if (c->partial_since)
        deadline = MIN(deadline, c->partial_since + AUTHD_STALL_USEC);
    if (c->stalled_since)
        deadline = MIN(deadline, c->stalled_since + AUTHD_STALL_USEC);
    if (c->closing)
        deadline = MIN(deadline, c->closing_since + CLOSE_GRACE_USEC);
    if (!c->timer)
        return;
    if (deadline == UINT64_MAX)
        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
    else {
        (void)sd_event_source_set_time(c->timer, deadline);
        (void)sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
    }
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    struct authd_conn *c = userdata;

    if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->closing && !conn_read(c)) {
        conn_free(c);
        return 0;
    }
    if (!conn_write(c) || (c->closing && !c->out_head)) {
        conn_free(c);
        return 0;
    }
    conn_update(c);
    return 0;
}

static int on_conn_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct authd_conn *c = userdata;

    if (c->closing && usec >= c->closing_since + CLOSE_GRACE_USEC)
        log_info("Connection %" PRIu64 " did not read its final reply; closed.", c->number);
    else if (c->partial_since && usec >= c->partial_since + AUTHD_STALL_USEC)
        log_info("Connection %" PRIu64 " (uid %u) left a frame half-sent for 30 s; closed.",
                 c->number, (unsigned)c->uid);
    else if (c->stalled_since && usec >= c->stalled_since + AUTHD_STALL_USEC)
        log_info("Connection %" PRIu64 " (uid %u) has not read its replies for 30 s; closed.",
                 c->number, (unsigned)c->uid);
    else {
        conn_update(c);
        return 0;
    }
    conn_free(c);
    return 0;
}

/* Whether uid's user is a member of gid, as primary group or in the group database. */
static bool uid_in_group(uid_t uid, gid_t gid)
{
    struct passwd pw, *res = NULL;
    char pwbuf[4096];
    gid_t groups[256];
    int n = (int)ELEMENTSOF(groups);

    if (getpwuid_r(uid, &pw, pwbuf, sizeof pwbuf, &res) != 0 || !res)
        return false;
    if (pw.pw_gid == gid)
        return true;
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0) {
        _cleanup_free_ gid_t *big = NULL;

        if (n <= 0 || n > 65536)
            return false;
        big = calloc((size_t)n, sizeof *big);
        if (!big || getgrouplist(pw.pw_name, pw.pw_gid, big, &n) < 0)
            return false;
        for (int i = 0; i < n; i++)
            if (big[i] == gid)
                return true;
        return false;
    }
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return true;
    return false;
}

static unsigned peer_roles(struct authd *a, uid_t uid, bool *ret_dev_mode)
{
    unsigned roles = 0;

    *ret_dev_mode = false;
    if (uid == a->self_uid) {
        *ret_dev_mode = true;
        return _IPC_ROLE_ALL;
    }
    if (uid == 0)
        roles |= IPC_ROLE_ADMIN;
    if (a->have_router_uid && uid == a->router_uid)
        roles |= IPC_ROLE_ROUTER;
    if (!(roles & IPC_ROLE_ADMIN) && a->have_admin_gid && uid_in_group(uid, a->admin_gid))
        roles |= IPC_ROLE_ADMIN;
    return roles;
}

static unsigned conns_of_uid(struct authd *a, uid_t uid)
{
    unsigned n = 0;

    for (struct authd_conn *c = a->conns; c; c = c->next)
        if (c->uid == uid && !c->closing)
            n++;
    return n;
}

static int conn_new(struct authd *a, int fd)
{
    struct ucred cred = {};
    socklen_t len = sizeof cred;
    struct authd_conn *c;
    int r;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        r = -errno;
        safe_close(fd);
        return log_warning_errno(r, "Failed to read a peer's credentials, dropping it: %m");
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        safe_close(fd);
        return log_oom();
    }
    c->authd = a;
    c->fd = fd;
    c->number = ++a->next_conn_number;
    c->uid = cred.uid;
    c->pid = cred.pid;
    c->reader = IPC_READER_INIT;
    c->roles = peer_roles(a, cred.uid, &c->dev_mode);
    /* Counted before this connection joins the list. */
    unsigned same_uid = conns_of_uid(a, cred.uid);
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->n_conns++;

    r = sd_event_add_io(a->event, &c->io, fd, EPOLLIN, on_conn_io, c);
    if (r >= 0)
        r = sd_event_add_time(a->event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_conn_timer,
                              c);
    if (r >= 0)
        r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
    if (r < 0) {
        conn_free(c);
        return log_warning_errno(r, "Failed to watch a new connection: %m");
    }

    log_debug("Connection %" PRIu64 " from uid %u pid %u, roles%s%s%s.", c->number,
              (unsigned)cred.uid, (unsigned)cred.pid, c->roles & IPC_ROLE_ROUTER ? " router" : "",
              c->roles & IPC_ROLE_ADMIN ? " admin" : "",
              c->roles == 0 ? " none"
              : c->dev_mode ? " (dev mode)"
                            : "");
    if (c->roles == 0) {
        log_notice("Refusing a connection from uid %u (pid %u): it has no role.",
                   (unsigned)cred.uid, (unsigned)cred.pid);
        conn_fail(c, IPC_ERROR_FORBIDDEN, "This user may not use authd");
        return 0;
    }
    if (same_uid >= (unsigned)a->cfg->max_connections_per_uid) {
        log_warning("Refusing a connection from uid %u: it holds %u connections already "
                    "(max_connections_per_uid).",
                    (unsigned)cred.uid, same_uid);
        conn_fail(c, IPC_ERROR_BUSY, "Too many connections from this user");
        return 0;
    }
    conn_update(c);
    return 0;
}

static int on_accept_resume(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct authd *a = userdata;

    (void)sd_event_source_set_enabled(a->listen_src, SD_EVENT_ON);
    sd_event_source_disable_unref(src);
    return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    struct authd *a = userdata;

    for (int i = 0; i < 64; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (cfd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return 0;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: pause accepting rather than spin on the same error. */
                log_warning_errno(-errno, "Failed to accept a connection, pausing for 1 s: %m");
                (void)sd_event_source_set_enabled(src, SD_EVENT_OFF);
                if (sd_event_add_time_relative(a->event, NULL, CLOCK_MONOTONIC, ACCEPT_PAUSE_USEC,
                                               0, on_accept_resume, a) < 0)
                    (void)sd_event_source_set_enabled(src, SD_EVENT_ON);
                return 0;
            }
            log_warning_errno(-errno, "Failed to accept a connection: %m");
            return 0;
        }
        (void)conn_new(a, cfd);
    }
    return 0;
}

void authd_announce_generation(struct authd *a)
{
    uint64_t g = 0;

    if (store_generation(a->store, &g) < 0 || g <= a->generation_announced)
        return;
    a->generation_announced = g;
    log_debug("Generation %" PRIu64 ".", g);
    for (struct authd_conn *c = a->conns; c; c = c->next) {
        json_t *ev;

        if (!c->subscribed_generation || c->closing)
            continue;
        ev = ipc_event_new("generation");
        if (ev && json_object_set_new(ev, "generation", json_integer((json_int_t)g)) < 0) {
            json_decref(ev);
            ev = NULL;
        }
        (void)authd_conn_send(c, ev);
    }
}

int authd_new(sd_event *e, const struct authd_config *cfg, struct store *store,
              struct cred_manager *cred, const char *database_path, struct authd **ret)
{
    _cleanup_(authd_freep) struct authd *a = NULL;
    struct passwd *pw;
    struct group *gr;

    a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->event = e;
    a->cfg = cfg;
    a->store = store;
    a->cred = cred;
    a->listen_fd = -1;
    a->self_uid = geteuid();
    a->started_at = (int64_t)(now_realtime_usec() / USEC_PER_SEC);
    a->database_path = strdup(database_path);
    a->socket_path = authd_config_socket_path(cfg);
    if (!a->database_path || !a->socket_path)
        return -ENOMEM;

    errno = 0;
    gr = cfg->admin_group && *cfg->admin_group ? getgrnam(cfg->admin_group) : NULL;
    if (gr) {
        a->have_admin_gid = true;
        a->admin_gid = gr->gr_gid;
    } else
        log_info("Group '%s' does not exist: only uid 0 (and authd's own uid) get the admin role.",
                 cfg->admin_group ? cfg->admin_group : "");
    pw = cfg->router_user && *cfg->router_user ? getpwnam(cfg->router_user) : NULL;
    if (pw) {
        a->have_router_uid = true;
        a->router_uid = pw->pw_uid;
    } else
        log_info("User '%s' does not exist: only authd's own uid gets the router role.",
                 cfg->router_user ? cfg->router_user : "");
    (void)store_generation(store, &a->generation_announced);
    *ret = TAKE_PTR(a);
    return 0;
}

static int bind_socket(struct authd *a)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int fd = -1;
    struct stat st;
    mode_t old;
    int r;

    if (strlen(a->socket_path) >= sizeof sa.sun_path)
        return log_error_errno(-ENAMETOOLONG, "Socket path '%s' is too long (at most %zu bytes).",
                               a->socket_path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, a->socket_path, strlen(a->socket_path));

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return log_error_errno(-errno, "Failed to create a Unix socket: %m");

    if (lstat(a->socket_path, &st) == 0) {
        _cleanup_close_ int probe = -1;

        if (!S_ISSOCK(st.st_mode))
            return log_error_errno(-EEXIST, "'%s' exists and is not a socket; not replacing it.",
                                   a->socket_path);
        /* A socket someone still listens on is another authd's: leave it alone. */
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0)
            return log_error_errno(-EADDRINUSE,
                                   "Another process is listening on '%s'; is authd running?",
                                   a->socket_path);
        if (unlink(a->socket_path) < 0 && errno != ENOENT)
            return log_error_errno(-errno, "Failed to remove the stale socket '%s': %m",
                                   a->socket_path);
        log_info("Removed the stale socket '%s'.", a->socket_path);
    }

    /* 0660 from the moment it exists: never briefly open to everyone. */
    old = umask(0117);
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
    umask(old);
    if (r < 0)
        return log_error_errno(r, "Failed to bind '%s': %m", a->socket_path);
    a->socket_owned = true;
    if (listen(fd, 128) < 0)
        return log_error_errno(-errno, "Failed to listen on '%s': %m", a->socket_path);
    a->listen_fd = TAKE_FD(fd);
    return 0;
}

int authd_start(struct authd *a)
{
    int n, r;

    n = sd_listen_fds(true);
    if (n < 0)
        return log_error_errno(n, "Failed to read the sockets systemd passed: %m");
    if (n > 0) {
        int fd = SD_LISTEN_FDS_START;

        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
            return log_error_errno(-EBADF,
                                   "systemd passed %d fds, but fd 3 is not a listening Unix "
                                   "stream socket.",
                                   n);
        r = fcntl(fd, F_GETFL);
        if (r < 0 || fcntl(fd, F_SETFL, r | O_NONBLOCK) < 0)
            return log_error_errno(-errno, "Failed to make the passed socket non-blocking: %m");
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        a->listen_fd = fd;
        log_info("Using the socket passed by systemd.");
    } else {
        r = bind_socket(a);
        if (r < 0)
            return r;
        log_info("Listening on '%s'.", a->socket_path);
    }
    r = sd_event_add_io(a->event, &a->listen_src, a->listen_fd, EPOLLIN, on_accept, a);
    if (r < 0)
        return log_error_errno(r, "Failed to watch the socket: %m");
    return 0;
}

struct authd *authd_free(struct authd *a)
{
    if (!a)
        return NULL;
    while (a->conns)
        conn_free(a->conns);
    a->listen_src = sd_event_source_disable_unref(a->listen_src);
    a->listen_fd = safe_close(a->listen_fd);
    if (a->socket_owned && a->socket_path && unlink(a->socket_path) < 0 && errno != ENOENT)
        log_warning_errno(-errno, "Failed to remove the socket '%s': %m", a->socket_path);
    authd_ops_done(a);
    free(a->socket_path);
    free(a->database_path);
    free(a);
    return NULL;
}
