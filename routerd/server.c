/* server.c: routerd's event loop.
 *
 * One sd-event loop runs everything; there is no thread per request. libmicrohttpd runs in epoll
 * mode without threads of its own: its epoll fd is one io source, MHD_get_timeout() drives one
 * time source, and a one-shot defer source runs MHD after a connection is resumed (MHD's inner
 * epoll is edge-triggered, so a resume does not wake the outer loop by itself). The curl multi
 * handle reports its sockets and timer through callbacks that add io and time sources; a 0 ms
 * curl timeout is served from a defer source, which saves a timerfd round trip per request.
 *
 * A sweep timer runs twice a second for the timeouts that neither library can enforce on a
 * suspended connection, and for the hang-up watches (proxy_sweep()). SIGTERM starts a drain:
 * MHD stops accepting, in-flight requests finish up to drain_timeout, then the loop exits. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "authd-client.h"
#include "curl-event.h"
#include "log.h"
#include "models.h"
#include "proxy.h"
#include "secret.h"
#include "server.h"
#include "util.h"

#define SWEEP_INTERVAL_USEC (500 * USEC_PER_MSEC)

static void mhd_rearm(struct server *s);

static void mhd_run(struct server *s)
{
    MHD_UNSIGNED_LONG_LONG ms;

    s->mhd_wanted = false;
    /* MHD's timeout stays 0 while a connection it has just served may have more to do (its epoll
     * is edge-triggered: a connection stays on its ready list until recv() says EAGAIN). Running
     * it again at once costs one epoll_wait(); leaving it to a defer source cost a whole loop pass
     * per request (measured: 2.7 passes per JSON request before, 1 after, and 1.75x the requests
     * per second at one connection). */
    for (unsigned i = 0; i < 4; i++) {
        MHD_run(s->mhd);
        if (MHD_get_timeout(s->mhd, &ms) != MHD_YES || ms != 0)
            break;
    }
    mhd_rearm(s);
}

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    mhd_run(userdata);
    return 0;
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct server *s = userdata;

    s->mhd_deadline = 0;
    mhd_run(s);
    return 0;
}

static int on_mhd_defer(sd_event_source *src, void *userdata)
{
    mhd_run(userdata);
    return 0;
}

void server_schedule_mhd(struct server *s)
{
    s->mhd_wanted = true;
    if (s->mhd_defer)
        sd_event_source_set_enabled(s->mhd_defer, SD_EVENT_ONESHOT);
}

/* Re-arms the MHD timer from MHD_get_timeout(). MHD's timeouts are idle timeouts counted in
 * seconds, so the timer gets a coarse accuracy, and it is not reprogrammed for a deadline that
 * moved by less than that (each reprogramming is a timerfd_settime()). */
static void mhd_rearm(struct server *s)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    uint64_t deadline, accuracy;

    if (!s->mhd)
        return;
    if (MHD_get_timeout(s->mhd, &ms) != MHD_YES) {
        if (s->mhd_deadline != 0) {
            sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_OFF);
            s->mhd_deadline = 0;
        }
        return;
    }
    if (ms == 0) {
        server_schedule_mhd(s);
        return;
    }
    accuracy = ms >= 1000 ? 250 * USEC_PER_MSEC : USEC_PER_MSEC;
    deadline = now_usec() + ms * USEC_PER_MSEC;
    if (s->mhd_deadline != 0 && deadline >= s->mhd_deadline &&
        deadline - s->mhd_deadline < accuracy)
        return;
    s->mhd_deadline = deadline;
    sd_event_source_set_time(s->mhd_timer, deadline);
    sd_event_source_set_time_accuracy(s->mhd_timer, accuracy);
    sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_ONESHOT);
}

/* curl: finished transfers. */
static void curl_check_done(struct server *s)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(s->curl.multi, &left))) {
        struct request *req = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        if (models_owns(s, m->easy_handle)) {
            models_transfer_done(s, m->data.result);
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        if (req)
            proxy_upstream_done(req, m->data.result);
    }
}

/* Lets curl act on fd (or its timeout), then finishes the transfers that ended. */
static void curl_drive(struct server *s, curl_socket_t fd, int mask)
{
    int running = 0;

    curl_multi_socket_action(s->curl.multi, fd, mask, &running);
    curl_check_done(s);
}

/* curl_event's act(): a socket or curl's timeout woke the loop. */
static void curl_action(struct curl_event *ce, curl_socket_t fd, int mask)
{
    struct server *s = ce->userdata;

    curl_drive(s, fd, mask);
    /* Curl's callbacks resumed connections; now that curl has returned, MHD may run at once
     * rather than one loop pass later (its defer source then finds nothing to do). */
    if (s->mhd_wanted && s->mhd) {
        sd_event_source_set_enabled(s->mhd_defer, SD_EVENT_OFF);
        mhd_run(s);
    }
}

void server_kick_curl(struct server *s)
{
    /* Not curl_action(): this runs inside MHD's access handler, where MHD must not run again. */
    curl_event_cancel_defer(&s->curl);
    curl_drive(s, CURL_SOCKET_TIMEOUT, 0);
}

/* Whether the environment names a proxy for libcurl. When it does not, every transfer says so
 * explicitly: libcurl otherwise looks the variables up again for each transfer (measured: getenv()
 * calls were 1% of routerd's CPU per JSON request). */
static bool proxy_from_environment(void)
{
    static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                       "all_proxy",  "ALL_PROXY",  "no_proxy",    "NO_PROXY"};
    static int cached = -1;

    if (cached < 0) {
        cached = 0;
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
            if (getenv(vars[i]))
                cached = 1;
    }
    return cached;
}

CURL *server_easy_get(struct server *s)
{
    CURL *e;

    if (s->n_easy_pool > 0) {
        e = s->easy_pool[--s->n_easy_pool];
        curl_easy_reset(e);
    } else
        e = curl_easy_init();
    if (e && !proxy_from_environment())
        curl_easy_setopt(e, CURLOPT_PROXY, "");
    return e;
}

void server_easy_put(struct server *s, CURL *e)
{
    if (!e)
        return;
    if (s->n_easy_pool < EASY_POOL_MAX)
        s->easy_pool[s->n_easy_pool++] = e;
    else
        curl_easy_cleanup(e);
}

static int on_sweep(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct server *s = userdata;

    proxy_sweep(s, now_usec());
    sd_event_source_set_time(src, usec + SWEEP_INTERVAL_USEC);
    sd_event_source_set_enabled(src, SD_EVENT_ON);
    return 0;
}

static void on_ledger_flushed(void *userdata)
{
    struct server *s = userdata;

    sd_event_exit(s->event, 0);
}

/* Exits the loop once the usage records are with authd (SIGTERM loses none). */
static void server_exit(struct server *s)
{
    if (s->exiting)
        return;
    s->exiting = true;
    if (s->authd && ledger_pending(&s->ledger) > 0 && !authd_client_is_connected(s->authd))
        log_warning("dualroute-authd is not reachable: %zu usage records are lost.",
                    ledger_pending(&s->ledger));
    if (!authd_client_is_connected(s->authd) || ledger_pending(&s->ledger) == 0 ||
        ledger_flush(&s->ledger, 5 * USEC_PER_SEC, on_ledger_flushed, s) < 0)
        sd_event_exit(s->event, 0);
}

static void server_maybe_exit(struct server *s)
{
    if (s->draining && s->n_requests == 0) {
        log_notice("All requests finished, exiting.");
        server_exit(s);
    }
}

void server_request_gone(struct server *s)
{
    if (s->draining)
        server_maybe_exit(s);
}

static int on_drain_timeout(sd_event_source *src, uint64_t usec, void *userdata)
{
    struct server *s = userdata;

    if (!s->drain_forced) {
        log_warning("Drain timeout reached with %zu requests in flight, ending them.",
                    s->n_requests);
        s->drain_forced = true;
        proxy_abort_all(s);
        /* Give the ended requests two seconds to deliver their error to the client. */
        sd_event_source_set_time(src, usec + 2 * USEC_PER_SEC);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        server_maybe_exit(s);
        return 0;
    }
    log_warning("%zu requests still open after the drain, exiting anyway.", s->n_requests);
    server_exit(s);
    return 0;
}

int server_drain(struct server *s)
{
    int r;

    if (s->draining)
        return 0;
    s->draining = true;
    (void)sd_notify(false, "STOPPING=1\nSTATUS=Draining in-flight requests");
    log_notice("Stopping: no new connections, draining %zu in-flight requests (up to %llu s).",
               s->n_requests, (unsigned long long)(s->cfg->drain_timeout / USEC_PER_SEC));

    /* MHD hands the listening socket back; closing it makes new connections fail at once. */
    if (s->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
        s->listen_fd = -1;
    }
    r = sd_event_add_time_relative(s->event, &s->drain_timer, CLOCK_MONOTONIC,
                                   s->cfg->drain_timeout, 100 * USEC_PER_MSEC, on_drain_timeout, s);
    if (r < 0)
        return log_error_errno(r, "Failed to arm the drain timer: %m");
    server_maybe_exit(s);
    return 0;
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata)
{
    struct server *s = userdata;

    if (si->ssi_signo == SIGHUP) {
        int r;

        if (!s->reload || s->draining) {
            log_notice("SIGHUP received while %s, ignored.",
                       s->draining ? "stopping" : "reloading is not possible");
            return 0;
        }
        (void)sd_notify(false, "RELOADING=1\nSTATUS=Reloading the configuration");
        r = s->reload(s, s->reload_userdata);
        (void)sd_notifyf(false, "READY=1\nSTATUS=%s on %s port %u",
                         r < 0 ? "Reload failed, previous configuration kept; listening"
                               : "Configuration reloaded; listening",
                         s->cfg->listen, s->port);
        return 0;
    }
    if (s->draining) {
        log_notice("Second stop signal, exiting without waiting for the drain.");
        sd_event_exit(s->event, 0);
        return 0;
    }
    return server_drain(s);
}

_printf_(2, 0) static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    log_debug("libmicrohttpd: %s", line);
}

bool sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

/* Parses the listen address; only numeric IPv4 and IPv6 literals are accepted. */
static int listen_address(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                          socklen_t *len, bool *loopback)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(addr);

    memset(ss, 0, sizeof(*ss));
    if (strcmp(addr, "localhost") == 0)
        addr = "127.0.0.1";
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof(*in4);
        *loopback = sockaddr_is_loopback((struct sockaddr *)ss);
        return 0;
    }
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' && n - 2 < sizeof tmp) {
        memcpy(tmp, addr + 1, n - 2);
        tmp[n - 2] = '\0';
        addr = tmp;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        *loopback = sockaddr_is_loopback((struct sockaddr *)ss);
        return 0;
    }
    return -EINVAL;
}

/* Socket activation (dualroute-routerd.socket): the first socket systemd passed, a listening
 * TCP socket; the listen and port keys are then ignored. 0 when systemd passed none. */
static int passed_socket(int *ret_fd, struct sockaddr_storage *ss, bool *loopback)
{
    socklen_t len = sizeof *ss;
    int n, fd = SD_LISTEN_FDS_START, flags;

    n = sd_listen_fds(true);
    if (n < 0)
        return log_error_errno(n, "Failed to read the sockets systemd passed: %m");
    if (n == 0)
        return 0;
    if (n > 1)
        log_warning("systemd passed %d sockets; using the first one only.", n);
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0 ||
        getsockname(fd, (struct sockaddr *)ss, &len) < 0 ||
        (ss->ss_family != AF_INET && ss->ss_family != AF_INET6))
        return log_error_errno(-EBADF,
                               "systemd passed fd %d, but it is not a listening TCP socket.", fd);
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return log_error_errno(-errno, "Failed to make the passed socket non-blocking: %m");
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    *loopback = sockaddr_is_loopback((struct sockaddr *)ss);
    *ret_fd = fd;
    log_info("Using the listening socket passed by systemd (socket activation).");
    return 1;
}

static int server_listen(struct server *s)
{
    struct sockaddr_storage ss, bound;
    socklen_t len = 0, blen = sizeof bound;
    _cleanup_close_ int fd = -1;
    bool loopback = false, passed;
    int one = 1, r;

    r = passed_socket(&fd, &ss, &loopback);
    if (r < 0)
        return r;
    passed = r > 0;
    if (!passed && listen_address(s->cfg->listen, (uint16_t)s->cfg->port, &ss, &len, &loopback) < 0)
        return log_error_errno(-EINVAL,
                               "Invalid listen address '%s': expected an IPv4 or IPv6 "
                               "address such as 127.0.0.1 or ::1.",
                               s->cfg->listen);
    /* auto: on for a non-loopback address when authd is there; without authd such an address
     * is refused below unless allow_unauthenticated says to serve it open. */
    s->team_on = s->cfg->team_mode == TEAM_MODE_ON ||
                 (s->cfg->team_mode == TEAM_MODE_AUTO && !loopback && s->authd);
    if (s->team_on && !s->authd)
        return log_error_errno(-EINVAL,
                               "Team mode (team_mode=on) needs dualroute-authd for the member "
                               "keys: set authd_socket (--authd-socket), or team_mode=off.");
    if (s->team_on)
        log_notice("Team mode: every request needs a member key (passthrough is off).");
    if (!loopback && !s->team_on && !s->cfg->allow_unauthenticated)
        return log_error_errno(-EPERM,
                               "Refusing to listen on non-loopback address '%s': anyone who can "
                               "reach it could spend your credits. Team mode with member keys "
                               "needs dualroute-authd; pass --allow-unauthenticated to accept "
                               "every client anyway.",
                               s->cfg->listen);

    if (!passed) {
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return log_error_errno(-errno, "Failed to create the listening socket: %m");
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&ss, len) < 0)
            return log_error_errno(-errno, "Failed to bind %s port %lld: %m", s->cfg->listen,
                                   (long long)s->cfg->port);
        if (listen(fd, 1024) < 0)
            return log_error_errno(-errno, "Failed to listen: %m");
    }
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
        return log_error_errno(-errno, "Failed to read the bound port: %m");
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    s->listen_fd = TAKE_FD(fd);
    return 0;
}

/* Raises the soft fd limit to the hard limit: 1,000 open streams need about 2,000 fds (the
 * client's and the upstream's). Warns when even that is short of max_connections, since clients
 * over the limit would wait in the accept queue unanswered. */
static void raise_nofile(const struct router_config *cfg)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections * 2 + 64)
        log_warning("The open-file limit (%llu) is too low for max_connections=%lld (each open "
                    "stream needs two descriptors); raise LimitNOFILE or 'ulimit -n', or lower "
                    "max_connections.",
                    (unsigned long long)rl.rlim_cur, (long long)cfg->max_connections);
}

int server_start(struct server *s)
{
    const union MHD_DaemonInfo *info;
    int r;

    raise_nofile(s->cfg);
    r = server_listen(s);
    if (r < 0)
        return r;

    s->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, proxy_access,
        s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_URI_LOG_CALLBACK, proxy_uri_log, s,
        MHD_OPTION_NOTIFY_COMPLETED, proxy_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        proxy_connection, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)s->cfg->max_header_size,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(s->cfg->client_idle_timeout / USEC_PER_SEC),
        MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, MHD_OPTION_END);
    if (!s->mhd)
        return log_error_errno(-EIO, "Failed to start the HTTP server (libmicrohttpd).");
    s->listen_fd = -1; /* MHD owns the listening socket now and closes it when it stops */

    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info)
        return log_error_errno(-EIO, "libmicrohttpd has no epoll fd.");
    r = sd_event_add_io(s->event, &s->mhd_io, info->epoll_fd, EPOLLIN, on_mhd_io, s);
    if (r < 0)
        return log_error_errno(r, "Failed to watch the HTTP server: %m");
    r = sd_event_add_time(s->event, &s->mhd_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_mhd_timer, s);
    if (r < 0)
        return log_error_errno(r, "Failed to add the HTTP timer: %m");
    r = sd_event_add_defer(s->event, &s->mhd_defer, on_mhd_defer, s);
    if (r < 0)
        return log_error_errno(r, "Failed to add the HTTP defer source: %m");
    sd_event_source_set_enabled(s->mhd_defer, SD_EVENT_OFF);
    r = sd_event_add_time_relative(s->event, &s->sweep, CLOCK_MONOTONIC, SWEEP_INTERVAL_USEC,
                                   50 * USEC_PER_MSEC, on_sweep, s);
    if (r < 0)
        return log_error_errno(r, "Failed to add the sweep timer: %m");
    sd_event_source_set_enabled(s->sweep, SD_EVENT_ON);
    mhd_rearm(s);

    log_notice("dualroute-routerd %s listening on http://%s%s%s:%u (upstream %s)",
               DUALROUTE_VERSION, strchr(s->cfg->listen, ':') ? "[" : "", s->cfg->listen,
               strchr(s->cfg->listen, ':') ? "]" : "", s->port, s->upstream_base);
    (void)sd_notifyf(false, "READY=1\nSTATUS=Listening on %s port %u", s->cfg->listen, s->port);
    return 0;
}

/* Checks the upstream URL: https anywhere, plain http to a loopback host only (tests). The client
 * never chooses it. */
static int upstream_parse(struct server *s, const char *url)
{
    _cleanup_free_ char *scheme = NULL, *host = NULL;
    CURLU *u;
    size_t n;
    int r = 0;

    u = curl_url();
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        r = -EINVAL;
    curl_url_cleanup(u);
    if (r < 0)
        return log_error_errno(r, "Invalid upstream URL '%s'.", url);
    if (strcmp(scheme, "http") == 0) {
        if (!startswith(host, "127.") && strcmp(host, "localhost") != 0 &&
            strcmp(host, "[::1]") != 0)
            return log_error_errno(-EPERM,
                                   "Upstream '%s' uses plain http to a non-loopback host; use "
                                   "https.",
                                   url);
        s->upstream_plain_http = true;
    } else if (strcmp(scheme, "https") != 0)
        return log_error_errno(-EPROTONOSUPPORT, "Upstream '%s' must be an https URL.", url);

    s->upstream_base = strdup(url);
    if (!s->upstream_base)
        return -ENOMEM;
    n = strlen(s->upstream_base);
    while (n > 0 && s->upstream_base[n - 1] == '/')
        s->upstream_base[--n] = '\0';
    return 0;
}

/* The model mappings of standalone mode: the mappings file (a missing one means none) and the
 * default model, into an empty map. */
static int load_mappings(const struct router_config *cfg, struct model_map *m)
{
    struct parse_error err = {};
    int r;

    if (cfg->mappings) {
        r = model_map_load_file(m, cfg->mappings, &err);
        if (r == -ENOENT)
            log_debug("No model mappings file '%s'.", cfg->mappings);
        else if (r < 0)
            return log_error_errno(r, "Invalid model mappings: %s", err.text);
        else
            log_notice("Loaded %zu model mappings from '%s'.", m->n_entries, cfg->mappings);
    }
    r = model_map_set_default(m, cfg->default_model);
    if (r < 0)
        return log_error_errno(r, "Invalid default model '%s': not a model id.",
                               cfg->default_model);
    return 0;
}

static int server_load_mappings(struct server *s)
{
    return load_mappings(s->cfg, &s->model_map);
}

/* A new snapshot from authd: its routes, and its aliases and default model in place of the
 * mappings file's (which standalone mode reads). A snapshot that does not parse leaves the last
 * good state in place. */
static void on_snapshot(const json_t *snapshot, void *userdata)
{
    struct server *s = userdata;
    struct model_map map = {};
    struct parse_error err = {};
    const json_t *aliases = json_object_get(snapshot, "aliases");
    const char *def = json_string_value(json_object_get(snapshot, "default_model"));
    _cleanup_free_ char *text = NULL;
    int r;

    /* Aliases and routes are checked before either is applied, so they change together. */
    text = json_is_object(aliases) ? json_dumps(aliases, JSON_COMPACT) : strdup("{}");
    if (!text || model_map_parse(&map, text, strlen(text), &err) < 0 ||
        model_map_set_default(&map, def ? def : s->cfg->default_model) < 0) {
        log_error("authd sent model aliases that do not parse (%s); keeping the previous ones.",
                  text ? err.text : "out of memory");
        model_map_done(&map);
        return;
    }
    r = route_table_apply(&s->routes, snapshot);
    if (r < 0) {
        log_error_errno(r, "authd sent routes that do not parse; keeping the previous ones.");
        model_map_done(&map);
        return;
    }
    model_map_done(&s->model_map);
    s->model_map = map;
    r = team_apply_snapshot(&s->team, snapshot, now_usec());
    if (r < 0)
        log_error_errno(r, "authd sent members or prices that do not parse; keeping the "
                           "previous ones.");
    log_info("Applied authd's snapshot, generation %" PRIu64 ": %zu routes, %zu aliases.",
             (uint64_t)json_integer_value(json_object_get(snapshot, "generation")),
             json_array_size(s->routes.routes), map.n_entries);
}

int server_apply_config(struct server *s)
{
    _cleanup_(model_map_done) struct model_map map = {};
    int r;

    /* Service mode: the mappings and the default model come with authd's next snapshot. */
    if (!s->authd) {
        r = load_mappings(s->cfg, &map);
        if (r < 0)
            return r;
        model_map_done(&s->model_map);
        s->model_map = map;
        map = (struct model_map){};
    }
    s->translate_options.overloaded_as_503 = s->cfg->openai_overloaded_as_503;
    return 0;
}

void server_model_caps(struct server *s, const char *model, struct model_info *info)
{
    json_t *item;

    if (!model || !s->model_caps)
        return;
    item = json_object_get(s->model_caps, model);
    if (item)
        model_info_merge_json(info, item);
}

/* authd stored a usage record: its cost is now in authd's spent figure for the member. */
static void on_ledger_stored(const struct ledger_record *rec, void *userdata)
{
    struct server *s = userdata;

    if (rec->member[0])
        team_stored(&s->team, rec->member, rec->cost_micro_usd);
}

int server_new(sd_event *e, const struct router_config *cfg, struct secret *api_key,
               struct server **ret)
{
    _cleanup_(server_freep) struct server *s = NULL;
    sigset_t mask;
    int r;

    s = calloc(1, sizeof(*s));
    if (!s) {
        secret_free(api_key);
        return -ENOMEM;
    }
    s->event = sd_event_ref(e);
    s->cfg = cfg;
    s->listen_fd = -1;
    s->api_key = api_key;
    r = random_bytes(&s->id_seed, sizeof s->id_seed);
    if (r < 0)
        return r;

    r = upstream_parse(s, cfg->upstream);
    if (r < 0)
        return r;

    s->translate_options = TRANSLATE_OPTIONS_DEFAULT;
    s->translate_options.overloaded_as_503 = cfg->openai_overloaded_as_503;
    r = server_load_mappings(s);
    if (r < 0)
        return r;
    if (cfg->authd_socket && *cfg->authd_socket) {
        r = authd_client_new(e,
                             &(struct authd_client_config){.socket_path = cfg->authd_socket,
                                                           .on_snapshot = on_snapshot,
                                                           .userdata = s},
                             &s->authd);
        if (r < 0)
            return log_error_errno(r, "Failed to set up the authd client: %m");
        log_notice("Service mode: credentials and routes come from dualroute-authd at %s.",
                   cfg->authd_socket);
        r = ledger_start(&s->ledger, e, s->authd, on_ledger_stored, s);
        if (r < 0)
            return r;
    }
    if (cfg->metrics_key_file) {
        r = secret_from_file(cfg->metrics_key_file, 4096, false, &s->metrics_key);
        if (r < 0)
            return log_error_errno(r, "Failed to read metrics_key_file '%s': %m",
                                   cfg->metrics_key_file);
    }

    /* Upstream sockets before MHD: under saturation MHD always has work pending, and at equal
     * priority an upstream answer could wait 50-300 ms to be read (measured, p99 at 16
     * connections 325 ms before, 2.4 ms after). curl's timer needs 1 µs accuracy. */
    r = curl_event_init(&s->curl, e, SD_EVENT_PRIORITY_IMPORTANT, 1, curl_action, s);
    if (r < 0)
        return r;
    curl_multi_setopt(s->curl.multi, CURLMOPT_MAXCONNECTS, (long)MIN(cfg->max_connections, 4096));

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    r = sd_event_add_signal(e, &s->sig_term, SIGTERM, on_signal, s);
    if (r >= 0)
        r = sd_event_add_signal(e, &s->sig_int, SIGINT, on_signal, s);
    if (r >= 0)
        r = sd_event_add_signal(e, &s->sig_hup, SIGHUP, on_signal, s);
    if (r < 0)
        return r;

    *ret = TAKE_PTR(s);
    return 0;
}

struct server *server_free(struct server *s)
{
    if (!s)
        return NULL;

    /* A suspended connection must be resumed before MHD_stop_daemon(); proxy_abort_all() ends the
     * upstream transfers and resumes every request. */
    proxy_abort_all(s);
    if (s->mhd) {
        MHD_run(s->mhd);
        MHD_stop_daemon(s->mhd);
    }
    s->mhd_io = sd_event_source_disable_unref(s->mhd_io);
    s->mhd_timer = sd_event_source_disable_unref(s->mhd_timer);
    s->mhd_defer = sd_event_source_disable_unref(s->mhd_defer);
    s->sweep = sd_event_source_disable_unref(s->sweep);
    s->drain_timer = sd_event_source_disable_unref(s->drain_timer);
    s->sig_term = sd_event_source_disable_unref(s->sig_term);
    s->sig_int = sd_event_source_disable_unref(s->sig_int);
    s->sig_hup = sd_event_source_disable_unref(s->sig_hup);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    /* After MHD: freeing the requests cancels their pending token requests. */
    ledger_done(&s->ledger);
    s->authd = authd_client_free(s->authd);
    route_table_done(&s->routes);
    team_done(&s->team);
    metrics_done(&s->metrics);
    secret_free(s->metrics_key);

    models_free(s);
    for (size_t i = 0; i < s->n_easy_pool; i++)
        curl_easy_cleanup(s->easy_pool[i]);
    curl_event_done(&s->curl);

    secret_free(s->api_key);
    free(s->upstream_base);
    model_map_done(&s->model_map);
    json_decref(s->model_caps);
    sd_event_unref(s->event);
    return mfree(s);
}
